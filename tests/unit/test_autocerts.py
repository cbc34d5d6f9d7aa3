"""Automatic certificates' logic over SQLite (paas/autocerts.py, paas/routes.py): which
hostnames get one, the steps and their transitions, backoff, renewal time, the weekly limit's
counting, what the router serves (uploaded certificates win; redirects only with a
certificate), and a CA's certificate for other names never stored. The orderer against a real
CA: tests/e2e/test_acme.py; against a CA that is down or answers garbage:
tests/integration/test_acme_orders.py."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from paas import autocerts, certs, domains, routes
from paas.acme_client import _seconds_until, new_key_pem
from paas.autocerts import Step
from paas.errors import Invalid
from paas.models import App, AutoCert, make_sessionmaker
from paas.settings import Settings
from paas.wire import Challenge, Route
from router.nginx import format_challenges, format_routes, parse_challenges, parse_routes
from tests.tls import make_cert

NOW = 1_800_000_000.0


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Session]:
    with make_sessionmaker(f"sqlite:///{tmp_path / 'paas.db'}")() as session:
        yield session


def settings(monkeypatch: pytest.MonkeyPatch, domain: str = "apps.example.com",
             acme: bool = True) -> Settings:
    monkeypatch.setenv("PAAS_DOMAIN", domain)
    monkeypatch.setenv("PAAS_ACME_DIRECTORY", "https://ca.test/dir" if acme else "")
    return Settings()


def app(db: Session, name: str, slot: int, *hostnames: str) -> App:
    row = App(name=name, slot=slot)
    db.add(row)
    db.flush()
    for hostname in hostnames:
        domains.add(db, row, hostname, "apps.example.com")
    return row


def test_every_routed_name_gets_a_row_but_wildcards_uploaded_and_local_names(
        db: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    s = settings(monkeypatch)
    shop = app(db, "shop", 1, "www.shop.test", "*.shop.test", "up.shop.test")
    cert, key = make_cert("up.shop.test")
    certs.add(db, shop, cert, key, s.domain)
    autocerts.reconcile(db, s, NOW)
    assert [r.hostname for r in autocerts.for_app(db, shop)] == ["shop.apps.example.com",
                                                                  "www.shop.test"]
    entries = {e["hostname"]: e for e in autocerts.status(db, shop, s, NOW)["domains"]}
    assert entries["*.shop.test"]["state"] == "unsupported"
    assert "dns-01" in entries["*.shop.test"]["message"]
    assert entries["up.shop.test"]["state"] == "uploaded"
    assert entries["www.shop.test"]["state"] == "pending"
    # Never for localhost: no CA can reach it.
    local = settings(monkeypatch, domain="localhost")
    autocerts.reconcile(db, local, NOW)
    assert [r.hostname for r in autocerts.for_app(db, shop)] == ["www.shop.test"]
    assert not autocerts.public_platform_domain(settings(monkeypatch, domain="10.0.0.1"))
    assert not autocerts.public_platform_domain(settings(monkeypatch, domain="paas.localhost"))


def test_a_removed_domain_and_a_disabled_app_lose_their_rows(
        db: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    s = settings(monkeypatch, domain="localhost")
    shop = app(db, "shop", 1, "www.shop.test", "two.shop.test")
    autocerts.reconcile(db, s, NOW)
    domains.remove(db, shop, "www.shop.test")
    assert autocerts.forget(db, "www.shop.test") is False  # nothing served yet
    domains.remove(db, shop, "two.shop.test")
    autocerts.reconcile(db, s, NOW)
    assert autocerts.for_app(db, shop) == []
    domains.add(db, shop, "www.shop.test", s.domain)
    autocerts.reconcile(db, s, NOW)
    autocerts.disable(db, shop)
    autocerts.reconcile(db, s, NOW)
    assert autocerts.for_app(db, shop) == []
    assert autocerts.status(db, shop, s)["domains"][1]["state"] == "off"


def row(step: Step = Step.NEW) -> AutoCert:
    return AutoCert(hostname="www.shop.test", step=step, failures=0, next_try_at=0.0,
                    reason="", step_at=NOW)


def test_steps_move_only_along_their_transitions() -> None:
    r = row()
    with pytest.raises(ValueError, match="cannot become"):
        autocerts.move(r, Step.ISSUED, NOW)
    autocerts.move(r, Step.PUBLISHED, NOW)
    r.token, r.key_authorization, r.generation = "t", "t.k", 7
    autocerts.move(r, Step.ANSWERED, NOW)
    assert r.token == "t"  # still answered while the CA validates
    autocerts.fail(r, "no", base=2, now=NOW)
    assert (r.step, r.token, r.generation, r.failures) == (Step.FAILED, "", 0, 1)
    assert r.next_try_at == NOW + 2
    with pytest.raises(ValueError):
        autocerts.move(r, Step.PUBLISHED, NOW)


def test_backoff_doubles_to_a_day_and_a_retry_after_wins_when_later() -> None:
    assert [autocerts.backoff(n, 300) for n in (1, 2, 3)] == [300, 600, 1200]
    assert autocerts.backoff(30, 300) == 86400
    r = row()
    autocerts.fail(r, "rate limited", base=300, now=NOW, retry_after=3600)
    assert r.next_try_at == NOW + 3600
    assert not autocerts.is_due(r, NOW + 3599) and autocerts.is_due(r, NOW + 3600)
    assert _seconds_until("120") == 120
    assert _seconds_until("Wed, 21 Oct 2015 07:28:00 GMT") == 0
    assert _seconds_until("soon") is None


def test_renewal_30_days_before_expiry_half_way_for_short_certificates() -> None:
    r = row(Step.ISSUED)
    r.issued_at, r.expires_at = NOW, NOW + 90 * 86400
    assert autocerts.renew_at(r) == NOW + 60 * 86400
    r.expires_at = NOW + 6 * 86400
    assert autocerts.renew_at(r) == NOW + 3 * 86400
    assert autocerts.is_due(r, NOW + 3 * 86400) and not autocerts.is_due(r, NOW)


def test_the_weekly_limit_counts_per_registered_domain(
        db: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    assert autocerts.registered_domain("a.b.shop.example.com") == "example.com"
    assert autocerts.registered_domain("www.shop.co.uk") == "shop.co.uk"
    shop = app(db, "shop", 1)
    for n, when in enumerate((NOW - 8 * 86400, NOW - 86400, NOW - 3600)):
        db.add(AutoCert(app_id=shop.id, hostname=f"a{n}.example.com", step=Step.ISSUED,
                        issued_at=when))
    db.flush()
    assert autocerts.weekly_issued(db, "new.example.com", NOW) == [NOW - 86400, NOW - 3600]
    assert autocerts.weekly_issued(db, "new.example.org", NOW) == []


def test_a_certificate_for_other_names_or_another_key_is_never_stored() -> None:
    key = new_key_pem()
    cert, own_key = make_cert("www.shop.test")
    with pytest.raises(Invalid, match="cannot be served"):
        autocerts.check_issued("www.shop.test", cert, key)
    other, other_key = make_cert("www.shop.test", "evil.test")
    with pytest.raises(Invalid, match=r"for evil\.test, www\.shop\.test, not"):
        autocerts.check_issued("www.shop.test", other, other_key)
    assert autocerts.check_issued("www.shop.test", cert, own_key).expires_at > time.time()


def test_the_route_table_serves_issued_certificates_challenges_and_redirects(
        db: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    s = settings(monkeypatch, domain="localhost")
    shop = app(db, "shop", 1, "www.shop.test", "up.shop.test", "new.shop.test")
    shop.https_redirect, shop.hsts_max_age = True, 60
    autocerts.reconcile(db, s, NOW)
    cert, key = make_cert("www.shop.test")
    rows = {r.hostname: r for r in autocerts.for_app(db, shop)}
    autocerts.move(rows["www.shop.test"], Step.PUBLISHED, NOW)
    autocerts.move(rows["www.shop.test"], Step.ANSWERED, NOW)
    autocerts.issue(rows["www.shop.test"], cert, key, NOW + 90 * 86400, NOW)
    autocerts.move(rows["new.shop.test"], Step.PUBLISHED, NOW)
    rows["new.shop.test"].token, rows["new.shop.test"].key_authorization = "tok", "tok.tp"
    uploaded, uploaded_key = make_cert("up.shop.test")
    certs.add(db, shop, uploaded, uploaded_key, s.domain)
    db.flush()
    served = routes.certificates(db, s.domain)
    assert [(c.name, c.hostnames) for c in served] == [
        ("shop-cert-1", ("up.shop.test",)), ("auto-www.shop.test", ("www.shop.test",))]
    assert routes.challenges(db) == (Challenge("new.shop.test", "tok", "tok.tp"),)
    table = routes.table(db, s.domain)
    assert table["www.shop.test"].https_redirect and table["www.shop.test"].hsts_max_age == 60
    assert table["up.shop.test"].https_redirect
    assert not table["new.shop.test"].https_redirect  # no certificate yet: no redirect
    assert not table["shop.localhost"].https_redirect


def test_router_lines_carry_the_redirect_and_the_challenges() -> None:
    routes_ = {"a.test": Route("a", "up", https_redirect=True, hsts_max_age=300),
               "b.test": Route("b", "idle")}
    text = format_routes(routes_)
    assert "a.test a up https:300\n" in text
    assert parse_routes(text) == routes_
    found = (Challenge("a.test", "tok-1", "tok-1.tp"),)
    assert parse_challenges(format_challenges(found)) == found
    with pytest.raises(Invalid):
        format_challenges((Challenge("a.test", "tok 1", "x"),))
