"""Every setting parsed once, with what is wrong and a good value: a bad PAAS_EGRESS_ALLOW
would otherwise fail every build, a bad PAAS_DYNO_HOST_PORTS every dyno start, when used."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import fields

from paas import database
from paas.doctor import Finding, passed, problem
from paas.errors import Invalid
from paas.runtime import egress, network
from paas.settings import SettingError, Settings

_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*$")


def check() -> list[Finding]:
    """One finding per bad setting (all of them, not the first), or one that all are good."""
    errors = [error for f in fields(Settings) if (error := _error(f.default_factory))]
    if not errors:
        errors = _derived_errors(Settings())
    if not errors:
        return [passed("settings", "PAAS_* settings", "every setting is valid")]
    return [problem("settings", e.name, f"{e.name}={e.value!r}: {e.problem}",
                    f"set it like {e.name}={e.example}") for e in errors]


def _error(factory: object) -> SettingError | None:
    if not callable(factory):
        return None
    try:
        factory()
    except SettingError as error:
        return error
    return None


def _derived_errors(settings: Settings) -> list[SettingError]:
    """The settings that hold a list or a network, parsed the way their users parse them."""
    checks: list[tuple[str, str, Callable[[str], object], str]] = [
        ("PAAS_EGRESS_ALLOW", settings.egress_allow, egress.parse_allow,
         "10.1.2.3:3141, 192.168.7.0/24"),
        ("PAAS_DYNO_HOST_PORTS", settings.dyno_host_ports, network.parse_ports, "5432, 6380"),
        ("PAAS_DYNO_SUBNET", settings.dyno_subnet, _dyno_subnet, "10.213.0.0/16"),
        ("PAAS_DOMAIN", settings.domain, _domain, "apps.example.com"),
    ]
    if settings.database_url_override:
        checks.append(("PAAS_DATABASE_URL", settings.database_url_override, database.check,
                       database.EXAMPLE))
    found = []
    for name, value, parse, example in checks:
        try:
            parse(value)
        except (Invalid, ValueError) as error:
            shown = database.shown(value) if name == "PAAS_DATABASE_URL" else value
            found.append(SettingError(name, shown, _reason(name, error), example))
    return found


def _reason(name: str, error: Exception) -> str:
    return str(error).removeprefix(f"{name}: ")


def _dyno_subnet(value: str) -> None:
    try:
        net = ipaddress.ip_network(value)
    except ValueError:
        raise ValueError("is not an IPv4 network in CIDR form with its host bits zero") from None
    if not isinstance(net, ipaddress.IPv4Network) or net.prefixlen > 16:
        raise ValueError("must be an IPv4 /16 (or larger): one /24 per app is carved out of it")
    network.app_network(value, 1)


def _domain(value: str) -> None:
    if not _HOSTNAME.match(value):
        raise ValueError("is not a DNS name (letters, digits, hyphens and dots, lower case): "
                         "apps are served at <app>.<domain>")
