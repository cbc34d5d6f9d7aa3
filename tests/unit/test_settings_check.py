"""Every setting is checked when `paas up` starts (and by `paas doctor`): each bad one is named,
with its value's problem and an example of a good value."""

from __future__ import annotations

import pytest

from paas.doctor import settings_check


def problems(monkeypatch: pytest.MonkeyPatch, **env: str) -> dict[str, str]:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return {f.check: f"{f.detail} | {f.fix}" for f in settings_check.check() if not f.ok}


def test_good_settings_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    assert problems(monkeypatch, PAAS_API_PORT="8400", PAAS_EGRESS_ALLOW="10.1.2.3:3141") == {}


@pytest.mark.parametrize(("name", "value", "reason", "example"), [
    ("PAAS_API_PORT", "eighty", "must be a TCP port, 1 to 65535", "PAAS_API_PORT=8400"),
    ("PAAS_ROUTER_PORT", "70000", "must be a TCP port", "PAAS_ROUTER_PORT=80"),
    ("PAAS_DYNO_MEMORY_MB", "512M", "must be a whole number", "PAAS_DYNO_MEMORY_MB=512"),
    ("PAAS_STOP_GRACE", "-1", "must be a number, 0 or more", "PAAS_STOP_GRACE=30"),
    ("PAAS_NODE_GRACE", "0", "seconds above 0", "PAAS_NODE_GRACE=30"),
    ("PAAS_BUILD_DISK_MB", "8", "at least 16", "PAAS_BUILD_DISK_MB=2048"),
    ("PAAS_EGRESS_ALLOW", "10.1.2.3:3141, mirror.lan", "'mirror.lan' is not an address",
     "PAAS_EGRESS_ALLOW=10.1.2.3:3141, 192.168.7.0/24"),
    ("PAAS_DYNO_HOST_PORTS", "5432, pg", "'pg' is not a TCP port",
     "PAAS_DYNO_HOST_PORTS=5432, 6380"),
    ("PAAS_DYNO_SUBNET", "10.213.0.0/24", "must be an IPv4 /16", "PAAS_DYNO_SUBNET=10.213.0.0/16"),
    ("PAAS_DYNO_SUBNET", "10.213.1.0/16", "host bits", "PAAS_DYNO_SUBNET=10.213.0.0/16"),
    ("PAAS_DOMAIN", "Apps_Example", "is not a DNS name", "PAAS_DOMAIN=apps.example.com"),
])
def test_a_bad_setting_is_named_with_its_problem_and_an_example(
        monkeypatch: pytest.MonkeyPatch, name: str, value: str, reason: str,
        example: str) -> None:
    found = problems(monkeypatch, **{name: value})
    assert list(found) == [name]
    assert f"{name}={value!r}" in found[name]
    assert reason in found[name]
    assert f"set it like {example}" in found[name]


def test_every_bad_setting_is_reported_not_only_the_first(
        monkeypatch: pytest.MonkeyPatch) -> None:
    found = problems(monkeypatch, PAAS_API_PORT="x", PAAS_SSH_PORT="-1", PAAS_LOG_LINES="many")
    assert set(found) == {"PAAS_API_PORT", "PAAS_SSH_PORT", "PAAS_LOG_LINES"}


def test_all_findings_of_bad_settings_are_fatal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAAS_DYNO_HOST_PORTS", "nope")
    assert all(f.fatal for f in settings_check.check())


@pytest.mark.parametrize(("value", "reason"), [
    ("mysql://paas:pw@127.0.0.1/paas", "'mysql' is not supported: use PostgreSQL"),
    ("postgresql://paas:pw@127.0.0.1:5432", "names no database"),
    ("postgresql:///paas", "names no host"),
    ("sqlite://", "names no SQLite file"),
    ("127.0.0.1:5432/paas", "is not a database URL"),
])
def test_a_database_url_paas_cannot_use_is_refused_without_its_password(
        monkeypatch: pytest.MonkeyPatch, value: str, reason: str) -> None:
    found = problems(monkeypatch, PAAS_DATABASE_URL=value)
    assert list(found) == ["PAAS_DATABASE_URL"]
    assert reason in found["PAAS_DATABASE_URL"]
    assert "set it like PAAS_DATABASE_URL=postgresql://paas:SECRET@127.0.0.1:5432/paas" in (
        found["PAAS_DATABASE_URL"])
    assert ":pw@" not in found["PAAS_DATABASE_URL"]


@pytest.mark.parametrize("value", [
    "postgresql://paas:pw@127.0.0.1:5432/paas", "postgres://paas:pw@db.lan/paas",
    "postgresql+psycopg://paas@/paas?host=/run/postgresql", "sqlite:////var/lib/paas/paas.db"])
def test_postgresql_and_sqlite_urls_pass(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    assert problems(monkeypatch, PAAS_DATABASE_URL=value) == {}


def test_postgres_urls_are_opened_with_psycopg_3() -> None:
    from paas import database

    assert database.engine_url("postgres://a:b@h/d").drivername == "postgresql+psycopg"
    assert database.engine_url("postgresql://a:b@h/d").drivername == "postgresql+psycopg"
    assert database.engine_url("sqlite:////x.db").drivername == "sqlite"
