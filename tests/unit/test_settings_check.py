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
