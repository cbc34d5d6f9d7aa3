"""The route table the router serves: every hostname of every app, what to do with it, and
the TLS certificates to terminate. Computed from the database; the router pushes it to nginx."""

from __future__ import annotations

import dataclasses

from sqlalchemy import select
from sqlalchemy.orm import Session

from paas import autocerts, certs, domains, dynos, releases
from paas.models import App
from paas.wire import Certificate, Challenge, DynoState, Peer, Route

# What the router does with a request for an app's hostname.
UP = "up"  # route to the peers
IDLE = "idle"  # no web dynos: H14
CRASHED = "crashed"  # web dynos exist but all crashed: H10
MAINTENANCE = "maintenance"  # H80


def _app_route(db: Session, app: App) -> Route:
    current = releases.current(db, app)
    web = [d for d in dynos.for_app(db, app)
           if current and d.release_version == current.version and d.type == "web"]
    # A lost node's web.1 and its replacement may both be up for a moment: both serve.
    peers = tuple(sorted({Peer(f"{d.ip}:{d.port}", f"{d.type}.{d.index}")
                          for d in web if d.state == DynoState.UP and d.ip},
                         key=lambda p: (p.dyno, p.addr)))
    if app.maintenance:
        mode = MAINTENANCE
    elif peers:
        mode = UP
    elif any(d.state == DynoState.CRASHED for d in web):
        mode = CRASHED
    else:
        mode = IDLE
    return Route(app.name, mode, peers)


def table(db: Session, platform_domain: str) -> dict[str, Route]:
    """hostname → its route: its app, mode and peers."""
    apps = {app.id: app for app in db.scalars(select(App))}
    by_app = {app_id: _app_route(db, app) for app_id, app in apps.items()}
    result = {f"{app.name}.{platform_domain}": by_app[app.id] for app in apps.values()}
    for domain in domains.all_domains(db):
        if domain.app_id in by_app:
            result[domain.hostname] = by_app[domain.app_id]
    return _with_https(result, apps, certificates(db, platform_domain))


def _with_https(routes: dict[str, Route], apps: dict[int, App],
                served: tuple[Certificate, ...]) -> dict[str, Route]:
    """`paas https:redirect on`: only for the hostnames served with a certificate."""
    secure = {host for cert in served for host in cert.hostnames}
    redirecting = {app.name: app for app in apps.values() if app.https_redirect}
    for host, route in routes.items():
        app = redirecting.get(route.app)
        if app is not None and host in secure:
            routes[host] = dataclasses.replace(route, https_redirect=True,
                                               hsts_max_age=app.hsts_max_age)
    return routes


def certificates(db: Session, platform_domain: str) -> tuple[Certificate, ...]:
    """The certificates to serve by SNI, each with the hostnames it serves (its app's)."""
    served = []
    for cert in certs.all_certificates(db):
        hostnames = certs.served_hostnames(db, cert, platform_domain)
        if hostnames:
            served.append(Certificate(cert.name, tuple(hostnames), cert.cert_pem, cert.key_pem))
    # An uploaded certificate wins: automatic ones are left out for the names it serves.
    return (*served, *autocerts.served_certificates(db))


def challenges(db: Session) -> tuple[Challenge, ...]:
    """The ACME http-01 challenges the router answers itself (paas/autocerts.py)."""
    return autocerts.challenges(db)
