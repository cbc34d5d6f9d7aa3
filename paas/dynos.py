"""Dynos: what should run (from releases, formation and one-offs) and what runs (as the agent
reports it). One-off dynos are `paas run` (run.N), a release phase (release.N) and app.json's
postdeploy script (postdeploy.N)."""

from __future__ import annotations

import logging
import time
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from paas import formation, releases
from paas.errors import Invalid, NotFound
from paas.models import (
    ONEOFF_TRANSITIONS,
    App,
    Dyno,
    OneOff,
    OneOffState,
    Release,
)
from paas.wire import DYNO_TRANSITIONS, DynoState

ONEOFF_TYPES = ("run", "release", "postdeploy")
LIVE_ONEOFF = (OneOffState.REQUESTED, OneOffState.RUNNING)
TAIL_LINES = 40

log = logging.getLogger("paas.dynos")


def _dyno_env(app: App, release: Release, name: str, port: int) -> dict[str, str]:
    slug = release.slug or {}
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


def _dyno(app: App, release: Release, process_type: str, index: int, command: str,
          size: formation.Size, port: int) -> dict[str, Any]:
    return {
        "app": app.name, "slot": app.slot, "uid": app.uid,
        "release": release.version, "type": process_type, "index": index,
        "command": ["/bin/sh", "-c", command],
        "env": _dyno_env(app, release, f"{process_type}.{index}", port),
        "layers": [layer["digest"] for layer in (release.slug or {}).get("layers", [])],
        "memory_mb": size.memory_mb, "cpu_shares": size.cpu_shares,
        "pids": size.pids, "disk_mb": size.disk_mb, "port": port, "size": size.name,
        # A running dyno whose generation differs (a resize, a ps:restart) is replaced.
        "generation": size.name, "healthchecks": [], "oneoff": False,
    }


def _desired_for_release(db: Session, app: App, release: Release, port: int) -> list[dict]:
    slug = release.slug or {}
    checks = (slug.get("app_json") or {}).get("healthchecks", {})
    wanted = []
    for row in formation.for_app(db, app):
        command = slug.get("process_types", {}).get(row.type)
        if command is None or row.type == "release":
            continue
        size = formation.SIZES.get(row.size, formation.SIZES["basic"])
        for index in range(1, row.quantity + 1):
            dyno = _dyno(app, release, row.type, index, command, size, port)
            dyno["generation"] = f"{size.name}:{formation.restart_mark(row, index):.6f}"
            dyno["healthchecks"] = checks.get(row.type, [])
            wanted.append(dyno)
    return wanted


def _desired_oneoffs(db: Session, app: App, port: int) -> list[dict]:
    pending = releases.pending(db, app)
    query = select(OneOff).where(OneOff.app_id == app.id, OneOff.state.in_(LIVE_ONEOFF))
    wanted = []
    for oneoff in db.scalars(query):
        if oneoff.type == "release" and (pending is None or oneoff.release_id != pending.id):
            continue  # a superseded release's phase
        size = formation.SIZES.get(oneoff.size, formation.SIZES["basic"])
        dyno = _dyno(app, oneoff.release, oneoff.type, oneoff.number, oneoff.command, size, port)
        dyno["env"].update(oneoff.env)
        dyno.update(oneoff=True, attach=oneoff.attach, tty=oneoff.attach and oneoff.tty,
                    build_id=oneoff.release.build_id if oneoff.type == "release" else None)
        wanted.append(dyno)
    return wanted


def desired(db: Session, port: int) -> dict[str, Any]:
    """Every dyno that should run: the current release's formation, the pending release's
    while it boots (the old keeps serving until the new answers) once its release phase
    succeeded, and the one-offs; and each app's stop grace."""
    wanted: list[dict[str, Any]] = []
    apps: dict[str, dict[str, Any]] = {}
    for app in db.scalars(select(App).order_by(App.name)):
        apps[app.name] = {"stop_grace": app.stop_grace}
        current, pending = releases.current(db, app), releases.pending(db, app)
        if current is not None:
            wanted.extend(_desired_for_release(db, app, current, port))
        if pending is not None and releases.phase_passed(db, pending):
            wanted.extend(_desired_for_release(db, app, pending, port))
        wanted.extend(_desired_oneoffs(db, app, port))
    return {"dynos": wanted, "apps": apps}


def report(db: Session, reported: list[dict[str, Any]]) -> set[int]:
    """Replaces the known dynos with the agent's report; returns the ids of apps whose
    dynos changed state (their routes or pending release need a look)."""
    apps = {app.name: app for app in db.scalars(select(App))}
    before = {d.id: (d.app_id, d.state) for d in db.scalars(select(Dyno))}
    db.execute(delete(Dyno))
    changed: set[int] = set()
    seen_oneoffs: set[tuple[int, str, int]] = set()
    for item in reported:
        app = apps.get(item["app"])
        if app is None:
            continue
        previous = before.get(item["id"], (None, None))[1]
        dyno = Dyno(id=item["id"], app_id=app.id, release_version=item["release"],
                    type=item["type"], index=item["index"],
                    state=_reported_state(item["id"], previous, item["state"]),
                    ip=item.get("ip", ""), port=item.get("port", 0),
                    started_at=item.get("started_at", 0.0), exit_code=item.get("exit_code"),
                    restarts=item.get("restarts", 0), output_tail=item.get("output_tail", ""),
                    memory_mb=item.get("memory_mb", 0.0), reason=item.get("reason", ""),
                    cpu_percent=item.get("cpu_percent"))
        db.add(dyno)
        if before.pop(dyno.id, None) != (app.id, dyno.state):
            changed.add(app.id)
        if item.get("oneoff"):
            seen_oneoffs.add((app.id, dyno.type, dyno.index))
            if _oneoff_reported(db, app, item):
                changed.add(app.id)
    changed.update(app_id for app_id, _ in before.values())
    changed.update(_lost_oneoffs(db, seen_oneoffs))
    db.flush()
    return changed


def _reported_state(dyno_id: str, previous: str | None, reported: Any) -> DynoState:
    """The state to record. The agent watches the dyno and the API does not, so a move the
    table does not expect (a bug, or notes the agent lost) is logged and recorded anyway:
    refusing it would leave the record wrong for as long as the agent goes on saying so.
    Except out of a terminal state: a crashed dyno's container has exited and never runs
    again, so the record keeps its crash."""
    try:
        state = DynoState(reported)
    except ValueError:
        raise Invalid(f"dyno {dyno_id}: unknown state {reported!r}; send one of "
                      f"{', '.join(DynoState)}") from None
    if previous not in DYNO_TRANSITIONS or state == previous:
        return state
    allowed = DYNO_TRANSITIONS[DynoState(previous)]
    if state in allowed:
        return state
    kept = not allowed
    log.warning("dyno %s: the agent reported %s -> %s, which DYNO_TRANSITIONS does not allow; "
                "%s", dyno_id, previous, state, f"kept {previous}" if kept else "recorded")
    return DynoState(previous) if kept else state


def _oneoff(db: Session, app: App, process_type: str, number: int) -> OneOff | None:
    return db.scalar(select(OneOff).where(OneOff.app_id == app.id, OneOff.type == process_type,
                                          OneOff.number == number))


def _move(oneoff: OneOff, to: OneOffState) -> bool:
    if to not in ONEOFF_TRANSITIONS[OneOffState(oneoff.state)]:
        return False
    oneoff.state = to
    if to == OneOffState.EXITED:
        oneoff.finished_at = time.time()
    return True


def _oneoff_reported(db: Session, app: App, item: dict[str, Any]) -> bool:
    """Updates a one-off from the agent's word; True when it exited just now."""
    oneoff = _oneoff(db, app, item["type"], item["index"])
    if oneoff is None:
        return False
    if item.get("exit_code") is None:
        if oneoff.state == OneOffState.REQUESTED:
            _move(oneoff, OneOffState.RUNNING)
        return False
    if not _move(oneoff, OneOffState.EXITED):
        return False
    oneoff.exit_code = item["exit_code"]
    oneoff.output_tail = "\n".join(
        [item.get("reason", "")] * bool(item.get("reason")) + [item.get("output_tail", "")]
    ).strip()
    return True


def _lost_oneoffs(db: Session, seen: set[tuple[int, str, int]]) -> set[int]:
    """One-offs the agent ran but no longer reports were stopped or lost."""
    query = select(OneOff).where(OneOff.state.in_([OneOffState.RUNNING, OneOffState.STOPPING]))
    changed = set()
    for oneoff in db.scalars(query):
        if (oneoff.app_id, oneoff.type, oneoff.number) not in seen:
            _move(oneoff, OneOffState.EXITED)
            changed.add(oneoff.app_id)
    return changed


def start_failed(db: Session, app_name: str, process_type: str, number: int,
                 error: str) -> int | None:
    """The agent could not start a one-off: it exits with 127, the error as its output."""
    app = db.scalar(select(App).where(App.name == app_name))
    oneoff = _oneoff(db, app, process_type, number) if app else None
    if oneoff is None or not _move(oneoff, OneOffState.EXITED):
        return None
    oneoff.exit_code = 127
    oneoff.output_tail = error
    return oneoff.app_id


def create_oneoff(db: Session, app: App, release: Release, command: str, *,
                  process_type: str = "run", attach: bool = False, tty: bool = False,
                  size: str = "basic", env: dict[str, str] | None = None) -> OneOff:
    if not command.strip():
        raise Invalid("give a command to run: paas run -a APP -- CMD ARGS")
    number = (db.scalar(select(func.max(OneOff.number)).where(
        OneOff.app_id == app.id, OneOff.type == process_type)) or 0) + 1
    oneoff = OneOff(app_id=app.id, release_id=release.id, type=process_type, number=number,
                    command=command, attach=attach, tty=attach and tty,
                    size=formation.size_of(size).name,
                    env=env or {}, state=OneOffState.REQUESTED)
    db.add(oneoff)
    db.flush()
    return oneoff


def run(db: Session, app: App, command: str, *, attach: bool, size: str,
        env: dict[str, str], tty: bool = False) -> OneOff:
    """`paas run`: a one-off dyno of the current release; `tty`: attached with a terminal."""
    release = releases.current(db, app)
    if release is None:
        raise Invalid(f"{app.name} has no release yet: push code first (git push paas main)")
    return create_oneoff(db, app, release, command, attach=attach, tty=tty, size=size, env=env)


def get_oneoff(db: Session, app: App, name: str) -> OneOff:
    process_type, _, number = name.partition(".")
    found = _oneoff(db, app, process_type, int(number)) if number.isdigit() else None
    if found is None:
        raise NotFound(f"{app.name} has no one-off dyno {name}: `paas ps` lists its dynos")
    return found


def stop(db: Session, app: App, name: str) -> str:
    """`ps:stop`: a one-off stops for good; a formation dyno is replaced (as on Heroku,
    scale its type down to keep it stopped). Returns what happens."""
    process_type, _, index = name.partition(".")
    if not index.isdigit():
        raise Invalid(f"{name!r} is not a dyno name (e.g. web.1, run.3)")
    if process_type in ONEOFF_TYPES:
        oneoff = get_oneoff(db, app, name)
        if oneoff.state == OneOffState.EXITED:
            raise Invalid(f"{name} has exited already")
        _move(oneoff, OneOffState.STOPPING)
        return "stopped"
    declared = releases.declared_types(db, app)
    formation.restart(db, app, declared, process_type, int(index))
    return "stopped; the formation starts it again"


def oneoff_to_dict(oneoff: OneOff) -> dict[str, Any]:
    return {
        "name": f"{oneoff.type}.{oneoff.number}",
        "type": oneoff.type,
        "command": oneoff.command,
        "state": oneoff.state,
        "exit_code": oneoff.exit_code,
        "output_tail": oneoff.output_tail,
        "attach": oneoff.attach,
        "tty": oneoff.tty,
        "size": oneoff.size,
        "release": oneoff.release.version,
    }


def for_app(db: Session, app: App) -> list[Dyno]:
    query = select(Dyno).where(Dyno.app_id == app.id).order_by(Dyno.type, Dyno.index)
    return list(db.scalars(query))


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
        "memory_mb": round(dyno.memory_mb, 1),
        "cpu_percent": None if dyno.cpu_percent is None else round(dyno.cpu_percent, 1),
        "reason": dyno.reason,
        "ip": dyno.ip,
        "up": dyno.state == DynoState.UP,
    }
