"""What the agent tells the API of each dyno (`DynoReport`): its notes, corrected by what runc
sees now."""

from __future__ import annotations

from paas.runtime import DynoStatus, RunState, Runtime
from paas.runtime.agent.keys import DynoKey
from paas.runtime.agent.notes import Notes
from paas.runtime.dynolog import DynoLog
from paas.wire import DynoReport, DynoState

TAIL_LINES = 40
TAIL_BYTES = 16384  # a dyno's log can be large: never read it whole


def reported_state(noted: DynoState, *, exited: bool, exit_code: int | None, oneoff: bool,
                   leaving: bool) -> DynoState:
    """What the API is told of a dyno (`DYNO_TRANSITIONS`): the agent's notes, corrected by
    what runc sees now, which the notes may not know yet. `exited`: on its own, not on the
    platform's SIGTERM. A crash stays a crash. One that exited on its own crashed, unless it
    is a one-off that exited 0: that one is done (down); either stays so while it is cleaned
    up. A dyno the platform is taking out (`leaving`) is down."""
    if noted == DynoState.CRASHED:
        return noted
    if exited and noted in (DynoState.STARTING, DynoState.UP):
        return DynoState.DOWN if oneoff and exit_code == 0 else DynoState.CRASHED
    if leaving:
        return DynoState.DOWN
    return noted


def dyno_report(dyno: DynoStatus, notes: Notes, *, stopping: bool, restarts: int,
                runtime: Runtime, default_port: int) -> DynoReport:
    key = DynoKey.of(dyno.metadata)
    oneoff = bool(dyno.metadata.get("oneoff"))
    running = dyno.state == RunState.RUNNING
    state = reported_state(notes.state, exited=not running and not notes.stopped,
                           exit_code=dyno.exit_code, oneoff=oneoff,
                           leaving=stopping or bool(notes.retiring_since))
    return DynoReport(
        id=dyno.id, app=key.app, release=key.release, type=key.type, index=key.number,
        state=state, ip=dyno.ip, port=int(dyno.metadata.get("port", default_port)),
        started_at=dyno.started_at, exit_code=dyno.exit_code, restarts=restarts,
        memory_mb=runtime.memory_mb(dyno.id) if running else 0.0,
        cpu_percent=runtime.cpu_percent(dyno.id) if running else None,
        reason=notes.reason, oneoff=oneoff,
        output_tail=tail(dyno) if state == DynoState.CRASHED or oneoff else "")


def tail(dyno: DynoStatus) -> str:
    data = DynoLog(dyno.log_path).tail(TAIL_BYTES)
    return "\n".join(data.decode(errors="replace").splitlines()[-TAIL_LINES:])
