"""The dyno state machine: the table, the states the agent derives from its notes and runc,
and what the API records of the agent's reports."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session

from paas import dynos, nodes, scheduling
from paas.models import App
from paas.runtime.agent import reported_state
from paas.wire import DYNO_TRANSITIONS, DynoState, NodeInfo, NodeReport, WireError
from tests import postgres


def reachable(start: DynoState) -> set[DynoState]:
    seen, todo = {start}, [start]
    while todo:
        for state in DYNO_TRANSITIONS[todo.pop()] - seen:
            seen.add(state)
            todo.append(state)
    return seen


def test_every_state_is_in_the_table_and_reachable_from_starting() -> None:
    assert set(DYNO_TRANSITIONS) == set(DynoState)
    assert all(targets <= set(DynoState) for targets in DYNO_TRANSITIONS.values())
    assert reachable(DynoState.STARTING) == set(DynoState)


def test_crashed_is_the_only_terminal_state_and_every_dyno_can_end() -> None:
    assert [s for s in DynoState if not DYNO_TRANSITIONS[s]] == [DynoState.CRASHED]
    assert all(DynoState.CRASHED in reachable(s) for s in DynoState)
    assert all(state not in DYNO_TRANSITIONS[state] for state in DynoState)


def test_a_missed_report_cannot_make_a_legal_life_illegal() -> None:
    """Two steps seen as one (a report the API never got) are still one allowed step.
    (Out of down a dyno goes back to what it was before, and on from there.)"""
    for first in DynoState:
        for second in DYNO_TRANSITIONS[first] - {DynoState.DOWN}:
            for third in DYNO_TRANSITIONS[second]:
                assert third == first or third in DYNO_TRANSITIONS[first], (first, second, third)


def test_what_the_agent_reports_is_its_notes_or_an_allowed_step_from_them() -> None:
    for noted, exited, code, oneoff, leaving in itertools.product(
            DynoState, (False, True), (None, 0, 1, 137), (False, True), (False, True)):
        state = reported_state(noted, exited=exited, exit_code=code, oneoff=oneoff,
                               leaving=leaving)
        assert state == noted or state in DYNO_TRANSITIONS[noted], (noted, exited, code, state)


@pytest.mark.parametrize(("noted", "exited", "code", "oneoff", "leaving", "expected"), [
    # taken out by the platform; its exit on SIGTERM (or SIGKILL) is not its own
    (DynoState.UP, False, 143, False, True, DynoState.DOWN),
    (DynoState.STARTING, False, None, False, True, DynoState.DOWN),
    # it exited on its own, before the agent's notes knew; and while it is cleaned up
    (DynoState.UP, True, 1, False, False, DynoState.CRASHED),
    (DynoState.STARTING, True, 0, False, False, DynoState.CRASHED),
    (DynoState.UP, True, 1, False, True, DynoState.CRASHED),
    # a one-off that exited 0 is done, one that failed crashed
    (DynoState.UP, True, 0, True, False, DynoState.DOWN),
    (DynoState.UP, True, 0, True, True, DynoState.DOWN),
    (DynoState.UP, True, 2, True, False, DynoState.CRASHED),
    (DynoState.UP, True, 2, True, True, DynoState.CRASHED),
    # a crash stays a crash while the agent cleans it up
    (DynoState.CRASHED, True, 1, False, True, DynoState.CRASHED),
    (DynoState.UP, False, None, False, False, DynoState.UP),
])
def test_reported_state(noted: DynoState, exited: bool, code: int | None, oneoff: bool,
                        leaving: bool, expected: DynoState) -> None:
    assert reported_state(noted, exited=exited, exit_code=code, oneoff=oneoff,
                          leaving=leaving) == expected


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Session]:
    with postgres.session_in(tmp_path) as session:
        session.add(App(name="demo", slot=1))
        nodes.register(session, "node-a", NodeInfo(memory_mb=4096), 0.0)
        session.commit()
        yield session


def report(db: Session, state: str, dyno_id: str = "demo-1") -> str:
    item: dict[str, Any] = {"id": dyno_id, "app": "demo", "release": 1, "type": "web",
                            "index": 1, "state": state}
    scheduling.report(db, "node-a", NodeReport.from_json({"dynos": [item]}), 1.0, 30.0)
    (dyno,) = dynos.for_app(db, db.query(App).one())
    return dyno.state


def test_the_api_records_the_agents_allowed_steps(db: Session,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    assert [report(db, s) for s in ("starting", "up", "down", "up", "crashed")] == [
        "starting", "up", "down", "up", "crashed"]
    assert report(db, "down", "demo-2") == "down"  # first seen: any state
    assert caplog.records == []


def test_a_crashed_dyno_stays_crashed_whatever_the_agent_says(
        db: Session, caplog: pytest.LogCaptureFixture) -> None:
    report(db, "crashed")
    with caplog.at_level(logging.WARNING, logger="paas.dynos"):
        assert report(db, "up") == "crashed"
        assert report(db, "down") == "crashed"
    assert "demo-1: the agent reported crashed -> up" in caplog.text
    assert "kept crashed" in caplog.text


def test_an_unexpected_step_from_a_live_state_is_recorded_and_logged(
        db: Session, caplog: pytest.LogCaptureFixture) -> None:
    """The agent watches the dyno: the record follows it (e.g. notes it lost on a restart)."""
    report(db, "up")
    with caplog.at_level(logging.WARNING, logger="paas.dynos"):
        assert report(db, "starting") == "starting"
    assert "reported up -> starting" in caplog.text and "recorded" in caplog.text


def test_an_unknown_state_is_refused_and_changes_nothing(db: Session) -> None:
    report(db, "up")
    db.commit()
    with pytest.raises(WireError) as caught:  # the API answers 400 with its message
        report(db, "sleeping")
    assert "dynos[0].state: 'sleeping' is not one of starting, up, crashed, down" in str(
        caught.value)
    db.rollback()  # what the API's handler does with an error
    assert [d.state for d in dynos.for_app(db, db.query(App).one())] == ["up"]
