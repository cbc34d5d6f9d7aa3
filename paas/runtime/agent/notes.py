"""What the agent knows of each dyno beyond runc's word, kept in the dyno's directory
(`agent.json`) so that an agent started again adopts its dynos where it left them; and the
dyno state machine, whose state changes only in `NoteBook.change_state`.

Owned by the reconcile thread: no other thread reads or writes a dyno's notes."""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from paas import safefs
from paas.wire import DYNO_TRANSITIONS, DynoState

NOTES_FILE = "agent.json"


@dataclass
class Notes:
    state: DynoState = DynoState.STARTING
    reason: str = ""  # why it crashed (R10, a failed health check)
    retiring_since: float = 0.0  # unix time it was reported down as no longer wanted
    retire_after: int = -1  # the route generation to wait for; -1: not yet known
    check: int = 0  # index of the health check being tried
    attempts: int = 0  # failures of that check in a row
    next_check: float = 0.0  # unix time of its next try
    oom_kills: int = 0  # kills of its cgroup already logged (R15)
    finished: bool = False  # an exited dyno's end was logged
    stopped: bool = False  # the platform stopped it while it ran: its exit is no crash


class NoteBook:
    """The notes of every dyno on this node, by dyno id, read from disk once."""

    def __init__(self, dynos_dir: Path) -> None:
        self.dynos_dir = dynos_dir
        self._notes: dict[str, Notes] = {}

    def __contains__(self, dyno_id: object) -> bool:
        return dyno_id in self._notes

    def __len__(self) -> int:
        return len(self._notes)

    def ids(self) -> set[str]:
        return set(self._notes)

    def of(self, dyno_id: str) -> Notes:
        notes = self._notes.get(dyno_id)
        if notes is None:
            notes = self._notes[dyno_id] = _read(self.dynos_dir / dyno_id)
        return notes

    def update(self, dyno_id: str, **changes: Any) -> Notes:
        """Any note but the state (`change_state`)."""
        if "state" in changes:
            raise ValueError("a dyno's state changes through change_state")
        notes = self.of(dyno_id)
        for name, value in changes.items():
            setattr(notes, name, value)
        self._write(dyno_id, notes)
        return notes

    def change_state(self, dyno_id: str, state: DynoState, **changes: Any) -> bool:
        """The one place a dyno's state changes: only along `DYNO_TRANSITIONS` (a step the
        table does not allow is refused and said on stderr: an agent bug, not the dyno's)."""
        notes = self.of(dyno_id)
        if state != notes.state and state not in DYNO_TRANSITIONS[notes.state]:
            print(f"agent: dyno {dyno_id}: no step from {notes.state} to {state}",
                  file=sys.stderr, flush=True)
            return False
        notes.state = state
        for name, value in changes.items():
            setattr(notes, name, value)
        self._write(dyno_id, notes)
        return True

    def forget_all_but(self, present: set[str]) -> None:
        """Drops the notes of dynos that are gone (removed, or removed behind the agent's
        back): the agent runs for months."""
        for dyno_id in self._notes.keys() - present:
            del self._notes[dyno_id]

    def _write(self, dyno_id: str, notes: Notes) -> None:
        directory = self.dynos_dir / dyno_id
        if directory.is_dir():
            safefs.write_atomic(directory, NOTES_FILE, json.dumps(asdict(notes)).encode())


def _read(directory: Path) -> Notes:
    try:
        raw = json.loads(safefs.read_file(directory, NOTES_FILE) or b"")
        known = {f.name for f in dataclasses.fields(Notes)}
        notes = Notes(**{k: v for k, v in raw.items() if k in known})
        notes.state = DynoState(notes.state)
        return notes
    except (OSError, ValueError, TypeError, AttributeError, safefs.UnsafePath):
        return Notes()
