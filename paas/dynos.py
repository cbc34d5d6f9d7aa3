"""Dyno records: every dyno as its node last reported it (`paas ps`), what state to record
of a report, and `ps:stop`."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from paas import formation, oneoffs, releases
from paas.errors import Invalid
from paas.models import App, Assignment, Dyno
from paas.wire import DYNO_TRANSITIONS, DynoReport, DynoState

log = logging.getLogger("paas.dynos")
WAITING = "waiting"  # the state `paas ps` shows for a desired dyno no node has room for


def for_app(db: Session, app: App) -> list[Dyno]:
    query = select(Dyno).where(Dyno.app_id == app.id).order_by(Dyno.type, Dyno.index)
    return list(db.scalars(query))


def record(app: App, node: str, reported: DynoReport, previous: str | None) -> Dyno:
    """The row of one reported dyno; `previous`: the state recorded before, if any."""
    return Dyno(id=reported.id, app_id=app.id, node=node, release_version=reported.release,
                type=reported.type, index=reported.index,
                state=recorded_state(reported.id, previous, reported.state),
                ip=reported.ip, port=reported.port, started_at=reported.started_at,
                exit_code=reported.exit_code, restarts=reported.restarts,
                output_tail=reported.output_tail, memory_mb=reported.memory_mb,
                reason=reported.reason, cpu_percent=reported.cpu_percent)


def recorded_state(dyno_id: str, previous: str | None, state: DynoState) -> DynoState:
    """The state to record. The node watches the dyno and the API does not, so a move the
    table does not expect (a bug, or notes the agent lost) is logged and recorded anyway:
    refusing it would leave the record wrong for as long as the agent goes on saying so.
    Except out of a terminal state: a crashed dyno's container has exited and never runs
    again, so the record keeps its crash. (A state not in DynoState is refused by the wire
    type: the report is a 400.)"""
    if previous not in DYNO_TRANSITIONS or state == previous:
        return state
    allowed = DYNO_TRANSITIONS[DynoState(previous)]
    if state in allowed:
        return state
    kept = not allowed
    log.warning("dyno %s: the agent reported %s -> %s, which DYNO_TRANSITIONS does not allow; "
                "%s", dyno_id, previous, state, f"kept {previous}" if kept else "recorded")
    return DynoState(previous) if kept else state


def stop(db: Session, app: App, name: str) -> str:
    """`ps:stop`: a one-off stops for good; a formation dyno is replaced (as on Heroku,
    scale its type down to keep it stopped). Returns what happens."""
    process_type, _, index = name.partition(".")
    if not index.isdigit():
        raise Invalid(f"{name!r} is not a dyno name (e.g. web.1, run.3)")
    if process_type in oneoffs.TYPES:
        oneoffs.stop(db, app, name)
        return "stopped"
    declared = releases.declared_types(db, app)
    formation.restart(db, app, declared, process_type, int(index))
    return "stopped; the formation starts it again"


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
        "node": dyno.node,
    }


def usage_figures(db: Session) -> list[dict[str, Any]]:
    """Every dyno's memory and CPU on every node, as `paas/usage.py` sums them per type."""
    names = {app_id: name for app_id, name in db.execute(select(App.id, App.name))}
    return [{"app": names[d.app_id], "type": d.type, "state": d.state, "memory_mb": d.memory_mb,
             "cpu_percent": d.cpu_percent, "oneoff": d.type in oneoffs.TYPES}
            for d in db.scalars(select(Dyno))]


def waiting(db: Session, app: App) -> list[dict[str, Any]]:
    """The app's desired dynos that no node has room for, as `paas ps` lists them."""
    query = select(Assignment).where(Assignment.app_id == app.id, Assignment.node.is_(None))
    return [_waiting_dict(row) for row in db.scalars(query.order_by(Assignment.type,
                                                                    Assignment.index))]


def _waiting_dict(row: Assignment) -> dict[str, Any]:
    return {"name": f"{row.type}.{row.index}", "id": None, "type": row.type,
            "state": WAITING, "release": None, "started_at": None, "restarts": 0,
            "exit_code": None, "memory_mb": 0.0, "cpu_percent": None, "reason": row.reason,
            "ip": "", "up": False, "node": None}


def listing(db: Session, app: App) -> list[dict[str, Any]]:
    """`paas ps`: the reported dynos, then the desired ones waiting for room."""
    return [to_dict(d) for d in for_app(db, app)] + waiting(db, app)
