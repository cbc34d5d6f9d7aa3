"""`paas doctor`'s database check on PostgreSQL, which `paas up` also runs before it starts
anything: a server that answers (its version, its clock), and one that does not, named
without its password."""

from __future__ import annotations

import pytest

from paas.doctor import services
from paas.settings import Settings
from tests.platform import free_port


def findings(monkeypatch: pytest.MonkeyPatch, url: str) -> dict[str, tuple[bool, str]]:
    monkeypatch.setenv("PAAS_DATABASE_URL", url)
    return {f.check: (f.fatal, f.detail) for f in services.database(Settings())}


def test_a_postgresql_that_answers_passes(monkeypatch: pytest.MonkeyPatch,
                                          postgres_url: str) -> None:
    found = findings(monkeypatch, postgres_url)
    assert found["database"] == (False, "PostgreSQL 15 answers")
    assert found["database clock"][0] is False


def test_a_postgresql_that_does_not_answer_is_fatal_and_named_without_its_password(
        monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"postgresql://paas:hunter2@127.0.0.1:{free_port()}/paas"
    fatal, detail = findings(monkeypatch, url)["database"]
    assert fatal
    assert "cannot reach the database at postgresql://paas:***@127.0.0.1" in detail
    assert "hunter2" not in detail
