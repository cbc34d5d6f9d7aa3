"""The route table the router serves: every hostname of every app, what to do with it, and
the TLS certificates to terminate. Computed from the database; the router pushes it to nginx."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from paas import certs, domains, dynos, releases
from paas.models import App
from paas.wire import Certificate, DynoState, Peer, Route

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
    return result


def certificates(db: Session, platform_domain: str) -> tuple[Certificate, ...]:
    """The certificates to serve by SNI, each with the hostnames it serves (its app's)."""
    served = []
    for cert in certs.all_certificates(db):
        hostnames = certs.served_hostnames(db, cert, platform_domain)
        if hostnames:
            served.append(Certificate(cert.name, tuple(hostnames), cert.cert_pem, cert.key_pem))
    return tuple(served)
