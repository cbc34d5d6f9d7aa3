"""Custom domains: hostnames (or `*.example.com` wildcards) routed to one app each."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from paas import auth
from paas.errors import Conflict, Invalid, NotFound
from paas.models import App, Domain, User

_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def normalize(hostname: str, platform_domain: str) -> str:
    """The hostname in canonical form (lowercase, no trailing dot), or Invalid saying why."""
    name = hostname.strip().lower().rstrip(".")
    labels = name.split(".")
    wildcard = labels[0] == "*"
    rest = labels[1:] if wildcard else labels
    if (
        not name
        or len(name) > 253
        or len(rest) < (1 if wildcard else 2)  # `*.com` gets its own answer below
        or not all(_LABEL.fullmatch(label) for label in rest)
        or rest[-1].isdigit()
    ):
        raise Invalid(
            f"{hostname!r} is not a valid domain name: use a hostname such as www.example.com, "
            "or a wildcard such as *.example.com"
        )
    _refuse_platform_names(name, platform_domain.lower().rstrip("."))
    if wildcard and _is_public_suffix(rest):
        raise Invalid(f"{name} would take every domain under {'.'.join(rest)}, which anyone "
                      "may register under: a wildcard needs a domain of yours, such as "
                      f"*.example.{'.'.join(rest)}")
    return name


def _refuse_platform_names(name: str, platform_domain: str) -> None:
    """The platform's domain and every name under it are the platform's (<app>.PAAS_DOMAIN),
    and so is a wildcard over it: `*.example.com` would take every app not yet created."""
    suffix = f".{platform_domain}"
    if name == platform_domain or name.endswith(suffix):
        raise Invalid(f"{name} is under the platform's own domain {platform_domain}: every app "
                      f"is already served at <app>{suffix}")
    if covers(name, platform_domain):
        raise Invalid(f"{name} covers the platform's own domain {platform_domain} and the "
                      f"<app>{suffix} names of every app: choose a wildcard under a domain "
                      "of yours that the platform's does not share")


# Second-level labels under which registries sell names in many country-code TLDs (co.uk,
# com.au, ac.jp, ...). No public suffix list is installed: this catches the common ones.
_SHARED_SECOND_LEVELS = frozenset({
    "ac", "co", "com", "edu", "gov", "govt", "gob", "go", "int", "ltd", "me", "mil", "ne",
    "net", "nic", "nom", "or", "org", "plc", "sch"})


def _is_public_suffix(labels: list[str]) -> bool:
    """True for a TLD alone (`com`), or a shared second level of a country's TLD (`co.uk`)."""
    return len(labels) == 1 or (len(labels) == 2 and len(labels[1]) == 2
                                and labels[0] in _SHARED_SECOND_LEVELS)


def covers(pattern: str, hostname: str) -> bool:
    """True when `pattern` (a hostname or a `*.` wildcard) matches `hostname`, as nginx and
    the router do: a wildcard matches any depth of subdomain."""
    if pattern.startswith("*."):
        return hostname.endswith(pattern[1:]) and hostname != pattern[2:]
    return pattern == hostname


def for_app(db: Session, app: App) -> list[Domain]:
    return list(db.scalars(select(Domain).where(Domain.app_id == app.id)
                           .order_by(Domain.hostname)))


def all_domains(db: Session) -> list[Domain]:
    return list(db.scalars(select(Domain).order_by(Domain.hostname)))


def add(db: Session, app: App, hostname: str, platform_domain: str,
        user: User | None = None) -> Domain:
    """Adds a domain to `app`. A name another app's domain covers, or that covers one of
    another app's names, is refused: that app is named only to a `user` who may see it."""
    name = normalize(hostname, platform_domain)
    existing = db.scalar(select(Domain).where(Domain.hostname == name))
    if existing is not None:
        if existing.app_id == app.id:
            raise Conflict(f"{name} is already a domain of {app.name}")
        raise Conflict(f"{name} is already in use by {_other_app(db, existing, user)}: "
                       "a domain belongs to one app")
    _refuse_overlap(db, app, name, user)
    domain = Domain(app_id=app.id, hostname=name)
    db.add(domain)
    db.flush()
    return domain


def _refuse_overlap(db: Session, app: App, name: str, user: User | None) -> None:
    for other in db.scalars(select(Domain).where(Domain.app_id != app.id)
                            .order_by(Domain.hostname)):
        if covers(other.hostname, name):
            raise Conflict(f"{name} is covered by {other.hostname}, a domain of "
                           f"{_other_app(db, other, user)}: a hostname under another app's "
                           "wildcard belongs to that app")
        if covers(name, other.hostname):
            raise Conflict(f"{name} covers {other.hostname}, a domain of "
                           f"{_other_app(db, other, user)}: choose a wildcard that covers none "
                           "of another app's hostnames")


def _other_app(db: Session, domain: Domain, user: User | None) -> str:
    """'another app', or the app's name for a user who may see it (never revealed else)."""
    other = db.get(App, domain.app_id)
    if other is not None and user is not None and auth.may_access(db, user, other):
        return f"another app ({other.name})"
    return "another app"


def remove(db: Session, app: App, hostname: str) -> Domain:
    name = hostname.strip().lower().rstrip(".")
    domain = db.scalar(select(Domain).where(Domain.hostname == name,
                                            Domain.app_id == app.id))
    if domain is None:
        raise NotFound(f"{hostname!r} is not a domain of {app.name}: `paas domains -a "
                       f"{app.name}` lists them")
    db.delete(domain)
    db.flush()
    return domain


def to_dict(domain: Domain) -> dict[str, Any]:
    kind = "wildcard" if domain.hostname.startswith("*.") else "custom"
    return {"hostname": domain.hostname, "kind": kind, "created_at": domain.created_at}
