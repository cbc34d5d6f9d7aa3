"""The agent's own tables, without runc: the dyno notes and their one state change, the crash
counts and their backoff, both as a restarted agent reads them back from disk."""

from __future__ import annotations

from pathlib import Path

import pytest

from paas.runtime.agent import DynoKey
from paas.runtime.agent.crashes import CrashCounts
from paas.runtime.agent.notes import NoteBook
from paas.wire import DYNO_TRANSITIONS, DesiredDyno, DynoState

KEY = DynoKey("demo", 3, "web", 2)


def desired(generation: str = "basic:0") -> DesiredDyno:
    return DesiredDyno(app="demo", slot=1, uid=20001, release=3, type="web", index=2,
                       command=("/bin/sh", "-c", "true"), env={}, layers=(), memory_mb=512,
                       cpu_shares=0, pids=64, disk_mb=0, port=5000, size="basic",
                       generation=generation, node="n1")


def test_a_dyno_key_is_the_same_from_its_desired_dyno_and_its_records_metadata() -> None:
    metadata = {"app": "demo", "release": "3", "type": "web", "index": "2"}
    assert DynoKey.of(metadata) == DynoKey.wanted(desired()) == KEY
    assert KEY.name == "web.2"


@pytest.mark.parametrize("start", list(DynoState))
def test_a_state_changes_only_along_the_table(tmp_path: Path, start: DynoState) -> None:
    for target in DynoState:
        (tmp_path / "d1").mkdir(exist_ok=True)
        notes = NoteBook(tmp_path)
        notes.of("d1").state = start
        allowed = target == start or target in DYNO_TRANSITIONS[start]
        assert notes.change_state("d1", target) is allowed
        assert notes.of("d1").state == (target if allowed else start)


def test_notes_are_read_back_by_a_restarted_agent(tmp_path: Path) -> None:
    (tmp_path / "d1").mkdir()
    notes = NoteBook(tmp_path)
    notes.change_state("d1", DynoState.CRASHED, reason="R10")
    notes.update("d1", oom_kills=2)
    again = NoteBook(tmp_path).of("d1")
    assert (again.state, again.reason, again.oom_kills) == (DynoState.CRASHED, "R10", 2)
    assert isinstance(again.state, DynoState)
    with pytest.raises(ValueError, match="change_state"):
        notes.update("d1", state=DynoState.UP)


def test_forgotten_notes_are_those_of_dynos_gone(tmp_path: Path) -> None:
    notes = NoteBook(tmp_path)
    notes.of("d1"), notes.of("d2")
    notes.forget_all_but({"d2"})
    assert notes.ids() == {"d2"}


def test_crash_backoff_doubles_to_its_cap_and_survives_a_restart(tmp_path: Path) -> None:
    crashes = CrashCounts(tmp_path, backoff=1, backoff_cap=4)
    assert crashes.may_start(KEY, now=0)
    crashes.count(KEY, "basic:0", now=100)
    assert crashes.may_start(KEY, now=100)  # at once after a first crash
    crashes.count(KEY, "basic:0", now=100)
    assert not crashes.may_start(KEY, now=100.5) and crashes.may_start(KEY, now=101)
    for _ in range(5):
        crashes.count(KEY, "basic:0", now=100)
    again = CrashCounts(tmp_path, backoff=1, backoff_cap=4)
    assert again.restarts(KEY) == 7
    assert not again.may_start(KEY, now=103.9) and again.may_start(KEY, now=104)


def test_a_new_generation_or_an_unwanted_dyno_starts_the_count_over(tmp_path: Path) -> None:
    crashes = CrashCounts(tmp_path, backoff=1, backoff_cap=4)
    crashes.count(KEY, "basic:0", now=100)
    crashes.forget_stale({KEY: desired("basic:0")})
    assert crashes.restarts(KEY) == 1
    crashes.forget_stale({KEY: desired("basic:1")})  # a ps:restart or a resize
    assert crashes.restarts(KEY) == 0
    crashes.count(KEY, "basic:1", now=100)
    crashes.forget_stale({})
    assert CrashCounts(tmp_path, backoff=1, backoff_cap=4).restarts(KEY) == 0
