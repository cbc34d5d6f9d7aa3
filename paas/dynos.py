"""Dynos: what should run (from releases and formation) and what runs (as the agent reports)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from paas import formation, releases
from paas.models import App, Dyno, DynoState, Release


def _dyno_env(app: App, release: Release, process_type: str, index: int,
              port: int) -> dict[str, str]:
    slug = release.slug or {}
    name = f"{process_type}.{index}"
    return {
        "PYTHONUNBUFFERED": "1",
        **slug.get("env", {}),
        **release.config,
        "PORT": str(port),
        "DYNO": name,
        "PS": name,
        "HOME": "/app",
        "PAAS_RELEASE_VERSION": f"v{release.version}",
        "PAAS_SLUG_COMMIT": release.commit,
    }


def _desired_for_release(db: Session, app: App, release: Release, port: int) -> list[dict]:
    slug = release.slug or {}
    wanted = []
    for row in formation.for_app(db, app):
        command = slug.get("process_types", {}).get(row.type)
        if command is None:
            continue
        size = formation.SIZES.get(row.size, formation.SIZES["basic"])
        for index in range(1, row.quantity + 1):
            wanted.append({
                "app": app.name, "slot": app.slot, "uid": app.uid,
                "release": release.version, "type": row.type, "index": index,
                "command": ["/bin/sh", "-c", command],
                "env": _dyno_env(app, release, row.type, index, port),
                "layers": [layer["digest"] for layer in slug.get("layers", [])],
                "memory_mb": size.memory_mb, "cpu_shares": size.cpu_shares,
                "pids": size.pids, "port": port,
            })
    return wanted


def desired(db: Session, port: int) -> list[dict[str, Any]]:
    """Every dyno that should run: the current release's formation, plus the pending
    release's while it boots (the old keeps serving until the new answers)."""
    wanted = []
    for app in db.scalars(select(App).order_by(App.name)):
        for release in (releases.current(db, app), releases.pending(db, app)):
            if release is not None:
                wanted.extend(_desired_for_release(db, app, release, port))
    return wanted


def report(db: Session, reported: list[dict[str, Any]]) -> set[int]:
    """Replaces the known dynos with the agent's report; returns the ids of apps whose
    web dynos changed state (their routes or pending release need a look)."""
    apps = {app.name: app for app in db.scalars(select(App))}
    before = {d.id: (d.app_id, d.state) for d in db.scalars(select(Dyno))}
    db.execute(delete(Dyno))
    changed: set[int] = set()
    for item in reported:
        app = apps.get(item["app"])
        if app is None:
            continue
        dyno = Dyno(id=item["id"], app_id=app.id, release_version=item["release"],
                    type=item["type"], index=item["index"], state=item["state"],
                    ip=item.get("ip", ""), port=item.get("port", 0),
                    started_at=item.get("started_at", 0.0), exit_code=item.get("exit_code"),
                    restarts=item.get("restarts", 0), output_tail=item.get("output_tail", ""))
        db.add(dyno)
        if before.pop(dyno.id, None) != (app.id, dyno.state):
            changed.add(app.id)
    changed.update(app_id for app_id, _ in before.values())
    db.flush()
    return changed


def for_app(db: Session, app: App) -> list[Dyno]:
    query = select(Dyno).where(Dyno.app_id == app.id).order_by(Dyno.type, Dyno.index)
    return list(db.scalars(query))


def routes(db: Session, domain: str) -> dict[str, list[str]]:
    """host → the addresses of the current release's web dynos that are up."""
    table: dict[str, list[str]] = {}
    for app in db.scalars(select(App)):
        current = releases.current(db, app)
        table[f"{app.name}.{domain}"] = sorted(
            f"{d.ip}:{d.port}" for d in for_app(db, app)
            if current and d.release_version == current.version and d.type == "web"
            and d.state == DynoState.UP
        )
    return table


def to_dict(dyno: Dyno) -> dict[str, Any]:
    return {
        "name": f"{dyno.type}.{dyno.index}",
        "id": dyno.id,
        "type": dyno.type,
        "state": dyno.state,
        "release": dyno.release_version,
        "started_at": dyno.started_at,
        "restarts": dyno.restarts,
        "exit_code": dyno.exit_code,
    }
