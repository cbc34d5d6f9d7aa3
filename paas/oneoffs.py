"""One-off dynos: `paas run` (run.N), a release phase (release.N), app.json's postdeploy
script (postdeploy.N) and a run of one of app.json's cron jobs (cron.N, `paas/cron.py`).
requested → running → exited, or → stopping → exited; never restarted. Their node's reports
move them along (`reported`, `lost`, `start_failed`)."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from paas.errors import Invalid, NotFound
from paas.models import ONEOFF_TRANSITIONS, App, Assignment, OneOff, OneOffState, Release
from paas.sizes import size_of
from paas.wire import DynoReport

TYPES = ("run", "release", "postdeploy", "cron")
# What a node should run; a stopping one-off is no longer desired: its node stops it.
LIVE = (OneOffState.REQUESTED, OneOffState.RUNNING)
# What a node runs (until its report no longer has it).
RUNNING = (OneOffState.RUNNING, OneOffState.STOPPING)


def create(db: Session, app: App, release: Release, command: str, *,
           process_type: str = "run", attach: bool = False, tty: bool = False,
           size: str = "basic", env: dict[str, str] | None = None) -> OneOff:
    if not command.strip():
        raise Invalid("give a command to run: paas run -a APP -- CMD ARGS")
    number = (db.scalar(select(func.max(OneOff.number)).where(
        OneOff.app_id == app.id, OneOff.type == process_type)) or 0) + 1
    oneoff = OneOff(app_id=app.id, release_id=release.id, type=process_type, number=number,
                    command=command, attach=attach, tty=attach and tty,
                    size=size_of(size).name, env=env or {}, state=OneOffState.REQUESTED)
    db.add(oneoff)
    db.flush()
    return oneoff


def run(db: Session, app: App, release: Release | None, command: str, *, attach: bool,
        size: str, env: dict[str, str], tty: bool = False) -> OneOff:
    """`paas run`: a one-off dyno of `release` (the current one); `tty`: attached with a
    terminal."""
    if release is None:
        raise Invalid(f"{app.name} has no release yet: push code first (git push paas main)")
    return create(db, app, release, command, attach=attach, tty=tty, size=size, env=env)


def find(db: Session, app: App, process_type: str, number: int) -> OneOff | None:
    return db.scalar(select(OneOff).where(OneOff.app_id == app.id, OneOff.type == process_type,
                                          OneOff.number == number))


def get(db: Session, app: App, name: str) -> OneOff:
    process_type, _, number = name.partition(".")
    found = find(db, app, process_type, int(number)) if number.isdigit() else None
    if found is None:
        raise NotFound(f"{app.name} has no one-off dyno {name}: `paas ps` lists its dynos")
    return found


def stop(db: Session, app: App, name: str) -> None:
    """`ps:stop run.N`: it stops for good (its node stops it once it is no longer desired)."""
    oneoff = get(db, app, name)
    if oneoff.state == OneOffState.EXITED:
        raise Invalid(f"{name} has exited already")
    _move(oneoff, OneOffState.STOPPING)


def live(db: Session, app: App) -> list[OneOff]:
    query = select(OneOff).where(OneOff.app_id == app.id, OneOff.state.in_(LIVE))
    return list(db.scalars(query.order_by(OneOff.type, OneOff.number)))


def running(db: Session) -> list[OneOff]:
    return list(db.scalars(select(OneOff).where(OneOff.state.in_(RUNNING))))


def _move(oneoff: OneOff, to: OneOffState) -> bool:
    if to not in ONEOFF_TRANSITIONS[OneOffState(oneoff.state)]:
        return False
    oneoff.state = to
    if to == OneOffState.EXITED:
        oneoff.finished_at = time.time()
    return True


def reported(db: Session, app: App, dyno: DynoReport) -> bool:
    """Updates a one-off from its node's word; True when it exited just now."""
    oneoff = find(db, app, dyno.type, dyno.index)
    if oneoff is None:
        return False
    if dyno.exit_code is None:
        if oneoff.state == OneOffState.REQUESTED:
            _move(oneoff, OneOffState.RUNNING)
        return False
    if not _move(oneoff, OneOffState.EXITED):
        return False
    oneoff.exit_code = dyno.exit_code
    oneoff.output_tail = "\n".join([dyno.reason] * bool(dyno.reason) + [dyno.output_tail]).strip()
    return True


def lost(db: Session, node: str, seen: set[tuple[int, str, int]]) -> set[int]:
    """The one-offs `node` ran but no longer reports were stopped or lost: they exited.
    Returns their apps' ids. Only that node's: another node's report says nothing of them."""
    query = select(OneOff).join(Assignment, and_(
        Assignment.app_id == OneOff.app_id, Assignment.type == OneOff.type,
        Assignment.index == OneOff.number, Assignment.oneoff.is_(True))).where(
        OneOff.state.in_(RUNNING), Assignment.node == node)
    changed = set()
    for oneoff in db.scalars(query):
        if (oneoff.app_id, oneoff.type, oneoff.number) not in seen:
            _move(oneoff, OneOffState.EXITED)
            changed.add(oneoff.app_id)
    return changed


def start_failed(db: Session, app_name: str, process_type: str, number: int,
                 error: str) -> int | None:
    """Its node could not start a one-off: it exits with 127, the error as its output.
    Returns its app's id."""
    app = db.scalar(select(App).where(App.name == app_name))
    oneoff = find(db, app, process_type, number) if app else None
    if oneoff is None or not _move(oneoff, OneOffState.EXITED):
        return None
    oneoff.exit_code = 127
    oneoff.output_tail = error
    return oneoff.app_id


def to_dict(oneoff: OneOff) -> dict[str, Any]:
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
