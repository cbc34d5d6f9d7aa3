"""The dashboard's session cookie: signed, expiring, tamper-evident; CSRF compared exactly."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from paas.dashboard.sessions import DashboardSession, SessionCodec, secret_key
from paas.dashboard.web import safe_next


def test_a_session_survives_the_round_trip() -> None:
    codec = SessionCodec("k" * 40, max_age=60)
    session = DashboardSession(token_id=7, user_id=3, owns_token=True, email="ada@example.com")
    session.say("ok", "Created web")

    back = codec.loads(codec.dumps(session))

    assert back is not None
    assert (back.token_id, back.user_id, back.owns_token, back.email) == (7, 3, True,
                                                                         "ada@example.com")
    assert back.csrf == session.csrf
    assert back.take_flash() == [("ok", "Created web")]
    assert back.take_flash() == []


def test_a_tampered_or_foreign_cookie_is_no_session() -> None:
    codec = SessionCodec("k" * 40, max_age=60)
    cookie = codec.dumps(DashboardSession(token_id=1, user_id=1))
    payload, _, signature = cookie.rpartition(".")

    assert codec.loads(payload.replace(payload[2], "A" if payload[2] != "A" else "B") + "."
                       + signature) is None
    assert SessionCodec("other" * 8, max_age=60).loads(cookie) is None
    assert codec.loads("") is None
    assert codec.loads("not-a-cookie") is None


def test_a_session_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    codec = SessionCodec("k" * 40, max_age=60)
    cookie = codec.dumps(DashboardSession(token_id=1, user_id=1))
    later = time.time() + 61
    monkeypatch.setattr(time, "time", lambda: later)

    assert codec.loads(cookie) is None


def test_csrf_needs_the_sessions_own_token() -> None:
    session = DashboardSession()

    assert session.check_csrf(session.csrf)
    assert not session.check_csrf(None)
    assert not session.check_csrf("")
    assert not session.check_csrf(DashboardSession().csrf)


def test_the_signing_key_is_made_once_and_private(tmp_path: Path) -> None:
    first = secret_key(tmp_path)

    assert secret_key(tmp_path) == first
    assert len(first) >= 40
    assert (tmp_path / "dashboard-secret").stat().st_mode & 0o777 == 0o600


def test_sign_in_goes_back_only_to_dashboard_pages() -> None:
    assert safe_next("/dashboard/apps/web") == "/dashboard/apps/web"
    for target in ("https://evil.example/", "//evil.example/dashboard", "/v1/apps", None,
                   "/dashboard\\..\\x"):
        assert safe_next(target) == "/dashboard/"
