"""Automatic certificates: each hostname's certificate from the ACME CA and where its order
stands. The orderer (paas/acme_orders.py) moves the steps; the route table serves the issued
certificates and the challenges in flight (paas/routes.py).

A hostname's steps, changed only by `move`:

    new ──────────────▶ published ──────▶ answered ──────▶ issued
     ▲  (order created,   (every router     (the CA          │
     │   challenge in the  applied the       validated;      │ 30 days before expiry
     │   route table)      challenge; the    finalized,      ▼
     │                     CA is told)       stored)        new ...
     └──────── failed ◀──── any step fails (reason, next try with backoff)

An issued certificate stays served while its renewal is in flight or failing."""

from __future__ import annotations

import enum
import ipaddress
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from paas import certs, domains
from paas.errors import Invalid
from paas.models import App, AutoCert, Certificate
from paas.settings import Settings
from paas.wire import Certificate as WireCert
from paas.wire import Challenge


class Step(enum.StrEnum):
    NEW = "new"  # an order to create once next_try_at is reached
    PUBLISHED = "published"  # challenge in the route table, waiting for the routers
    ANSWERED = "answered"  # the CA was told to validate; waiting for it
    ISSUED = "issued"
    FAILED = "failed"  # reason; tried again at next_try_at


TRANSITIONS: dict[Step, set[Step]] = {
    # new → answered: the CA already holds a valid authorization for the name.
    Step.NEW: {Step.PUBLISHED, Step.ANSWERED, Step.FAILED},
    # → new: the order is gone at the CA (the account was registered again).
    Step.PUBLISHED: {Step.ANSWERED, Step.FAILED, Step.NEW},
    Step.ANSWERED: {Step.ISSUED, Step.FAILED, Step.NEW},
    Step.ISSUED: {Step.NEW},
    Step.FAILED: {Step.NEW},
}

RENEW_BEFORE = 30 * 86400.0
BACKOFF_CAP = 86400.0
WEEK = 7 * 86400.0


def move(row: AutoCert, step: Step, now: float | None = None) -> None:
    current = Step(row.step)
    if step not in TRANSITIONS[current]:
        raise ValueError(f"{row.hostname}: {current} cannot become {step}")
    row.step = step
    row.step_at = time.time() if now is None else now
    if step in (Step.NEW, Step.ISSUED, Step.FAILED):
        row.order_url = row.authz_url = row.challenge_url = row.token = ""
        row.key_authorization = ""
        row.generation = 0
    if step in (Step.ISSUED, Step.FAILED):
        row.order_key_pem = ""


def fail(row: AutoCert, reason: str, base: float, now: float,
         retry_after: float | None = None) -> None:
    """Failed: tried again after an exponential backoff, or later if the CA said so."""
    move(row, Step.FAILED, now)
    row.failures += 1
    row.reason = reason[:500]
    wait = backoff(row.failures, base)
    if retry_after is not None:
        wait = max(wait, retry_after)
    row.next_try_at = now + wait


def backoff(failures: int, base: float) -> float:
    return min(base * 2 ** max(failures - 1, 0), BACKOFF_CAP)


def issue(row: AutoCert, cert_pem: str, key_pem: str, expires_at: float, now: float) -> None:
    move(row, Step.ISSUED, now)
    row.cert_pem, row.key_pem, row.expires_at, row.issued_at = cert_pem, key_pem, expires_at, now
    row.failures, row.reason, row.next_try_at = 0, "", 0.0


def renew_at(row: AutoCert) -> float:
    """30 days before expiry; a certificate valid for 30 days or less, half-way."""
    lifetime = row.expires_at - row.issued_at
    return row.expires_at - (RENEW_BEFORE if lifetime > RENEW_BEFORE else lifetime / 2)


def is_due(row: AutoCert, now: float) -> bool:
    step = Step(row.step)
    if step in (Step.PUBLISHED, Step.ANSWERED):
        return True
    if step == Step.ISSUED:
        return renew_at(row) <= now
    return row.next_try_at <= now


# -- which hostnames get one ------------------------------------------------------------------


def public_platform_domain(settings: Settings) -> bool:
    """<app>.PAAS_DOMAIN names get certificates only under a public name: never localhost, a
    single label, an address or a local-only suffix."""
    name = settings.domain.lower().rstrip(".")
    try:
        ipaddress.ip_address(name)
        return False
    except ValueError:
        pass
    local = ("localhost", "local", "internal", "lan", "home.arpa")
    return "." in name and not any(name == s or name.endswith("." + s) for s in local)


def uploaded_cover(db: Session, app: App, hostname: str) -> Certificate | None:
    """The app's uploaded certificate serving `hostname`, if any: it wins."""
    for cert in certs.for_app(db, app):
        if any(n == hostname or domains.covers(n, hostname) for n in cert.hostnames):
            return cert
    return None


def wanted_hostnames(db: Session, app: App, settings: Settings) -> list[str]:
    """The app's hostnames to order certificates for: not wildcards (they need dns-01), not
    covered by an uploaded certificate."""
    names = [d.hostname for d in domains.for_app(db, app) if not d.hostname.startswith("*.")]
    if public_platform_domain(settings):
        names.insert(0, f"{app.name}.{settings.domain.lower().rstrip('.')}")
    return [n for n in names if uploaded_cover(db, app, n) is None]


def reconcile(db: Session, settings: Settings, now: float) -> bool:
    """A row for every hostname that should have a certificate, none for the others (a removed
    domain, a disabled app). True when a served certificate or a challenge went away."""
    rows = {row.hostname: row for row in db.scalars(select(AutoCert))}
    wanted: dict[str, App] = {}
    for app in db.scalars(select(App)):
        if app.acme_enabled:
            wanted.update({name: app for name in wanted_hostnames(db, app, settings)})
    changed = False
    for name, row in rows.items():
        if wanted.get(name) is None or wanted[name].id != row.app_id:
            changed = changed or bool(row.cert_pem or row.token)
            db.delete(row)
    for name, app in wanted.items():
        if name not in rows or rows[name].app_id != app.id:
            db.add(AutoCert(app_id=app.id, hostname=name, step=Step.NEW, next_try_at=0.0,
                            step_at=now))
    db.flush()
    return changed


def forget(db: Session, hostname: str) -> bool:
    """The hostname's certificate goes (its domain was removed). True when one was served."""
    row = db.scalar(select(AutoCert).where(AutoCert.hostname == hostname))
    if row is None:
        return False
    served = bool(row.cert_pem or row.token)
    db.delete(row)
    db.flush()
    return served


def disable(db: Session, app: App) -> bool:
    app.acme_enabled = False
    served = False
    for row in for_app(db, app):
        served = served or bool(row.cert_pem or row.token)
        db.delete(row)
    db.flush()
    return served


def for_app(db: Session, app: App) -> list[AutoCert]:
    return list(db.scalars(select(AutoCert).where(AutoCert.app_id == app.id)
                           .order_by(AutoCert.hostname)))


# -- rate limits ----------------------------------------------------------------------------


def registered_domain(hostname: str) -> str:
    """The name a CA counts its per-domain limits under (Let's Encrypt: the public suffix plus
    one label); without a public suffix list: the last two labels, three under `co.uk`."""
    labels = hostname.split(".")
    take = 3 if len(labels) >= 3 and domains._is_public_suffix(labels[-2:]) else 2
    return ".".join(labels[-take:])


def weekly_issued(db: Session, hostname: str, now: float) -> list[float]:
    """When the certificates of the last 7 days under the same registered domain were issued."""
    under = registered_domain(hostname)
    return sorted(row.issued_at for row in db.scalars(
        select(AutoCert).where(AutoCert.issued_at > now - WEEK))
        if registered_domain(row.hostname) == under)


# -- what the router serves -----------------------------------------------------------------


def served_certificates(db: Session) -> list[WireCert]:
    """Each issued certificate for its hostname, still the app's and not under an uploaded
    certificate (reconcile removes those rows; this holds between two of its runs too)."""
    found = []
    for row in db.scalars(select(AutoCert).where(AutoCert.cert_pem != "")
                          .order_by(AutoCert.hostname)):
        app = db.get(App, row.app_id)
        if app is None or not app.acme_enabled or uploaded_cover(db, app, row.hostname):
            continue
        found.append(WireCert(f"auto-{row.hostname}", (row.hostname,), row.cert_pem, row.key_pem))
    return found


def challenges(db: Session) -> tuple[Challenge, ...]:
    rows = db.scalars(select(AutoCert).where(AutoCert.token != "")
                      .where(AutoCert.step.in_([Step.PUBLISHED, Step.ANSWERED])))
    return tuple(sorted((Challenge(r.hostname, r.token, r.key_authorization) for r in rows),
                        key=lambda c: c.token))


# -- checks on what the CA returns ---------------------------------------------------------


@dataclass(frozen=True)
class Issued:
    chain_pem: str
    key_pem: str
    expires_at: float


def check_issued(hostname: str, chain_pem: str, key_pem: str) -> Issued:
    """The CA's certificate, if it is for exactly this hostname and our key; Invalid else
    (then it is never served)."""
    try:
        parsed = certs.parse(chain_pem, key_pem)
    except Invalid as exc:
        raise Invalid(f"the CA returned a certificate that cannot be served: {exc}") from None
    if parsed.hostnames != [hostname]:
        raise Invalid(f"the CA returned a certificate for {', '.join(parsed.hostnames)}, not "
                      f"{hostname}: it is not served")
    return Issued(parsed.chain_pem, parsed.key_pem, parsed.expires_at)


def leaf_serial(chain_pem: str) -> str:
    from cryptography import x509  # here: the API loads cryptography at its first certificate

    return format(x509.load_pem_x509_certificates(chain_pem.encode())[0].serial_number, "x")


# -- what users see ---------------------------------------------------------------------------


def status(db: Session, app: App, settings: Settings, now: float | None = None
           ) -> dict[str, Any]:
    """`paas certs:auto`: every hostname of the app with its certificate's state."""
    now = time.time() if now is None else now
    rows = {row.hostname: row for row in for_app(db, app)}
    hostnames = [f"{app.name}.{settings.domain}", *(d.hostname for d in domains.for_app(db, app))]
    return {"enabled": app.acme_enabled, "acme": bool(settings.acme_directory),
            "https_redirect": app.https_redirect, "hsts_max_age": app.hsts_max_age,
            "domains": [_hostname_status(db, app, settings, name, rows.get(name), now)
                        for name in hostnames]}


def _hostname_status(db: Session, app: App, settings: Settings, name: str,
                     row: AutoCert | None, now: float) -> dict[str, Any]:
    entry: dict[str, Any] = {"hostname": name, "state": "", "message": "", "expires_at": None,
                             "next_try_at": None, "failures": 0}
    uploaded = uploaded_cover(db, app, name)
    if uploaded is not None:
        return {**entry, "state": "uploaded", "expires_at": uploaded.expires_at,
                "message": f"served with the uploaded certificate {uploaded.name}"}
    if name.startswith("*."):
        return {**entry, "state": "unsupported", "message":
                "a wildcard needs a dns-01 challenge, which paas does not answer: upload a "
                "certificate for it with `paas certs:add`"}
    if row is None:
        return {**entry, "state": "off", "message": _off_reason(app, settings, name)}
    entry.update(failures=row.failures, expires_at=row.expires_at or None)
    step = Step(row.step)
    if step == Step.FAILED:
        serving = " (the current certificate is still served)" if row.cert_pem else ""
        return {**entry, "state": "failing", "next_try_at": row.next_try_at,
                "message": row.reason + serving}
    if row.cert_pem:
        renewing = step != Step.ISSUED
        return {**entry, "state": "issued",
                "message": "renewing now" if renewing else "renewed 30 days before expiry"}
    return {**entry, "state": "pending", "message": _pending_message(step)}


def _off_reason(app: App, settings: Settings, name: str) -> str:
    if not settings.acme_directory:
        return "automatic certificates are off on this platform (PAAS_ACME_DIRECTORY unset)"
    if not app.acme_enabled:
        return f"off for {app.name}: `paas certs:auto:enable` turns them on"
    if name == f"{app.name}.{settings.domain}" and not public_platform_domain(settings):
        return f"{settings.domain} is not a public domain: no CA can validate it"
    return "ordered at the orderer's next run"


def _pending_message(step: Step) -> str:
    return {Step.NEW: "ordering", Step.PUBLISHED: "waiting for the router to answer the challenge",
            Step.ANSWERED: "the CA is validating the domain"}.get(step, "")
