"""Runs of the platform's own jobs (`paas/platform_jobs.py`), as the database records them.

A job is due on the grid of its `every_seconds` (unix time divided by it), so every scheduler
process computes the same due time and the unique (name, due_at) row lets one of them claim
it. At most one run of a job at a time: a slot met while one runs is not claimed (the next
slot is). A run whose scheduler process died (same host, its pid gone) is failed by the next
look, so the job is not stuck; one of another host counts as dead once STALE old.
`admin:jobs:run NAME` adds a requested run that the next tick of any scheduler starts."""

from __future__ import annotations

import math
import os
import socket
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from paas.errors import Conflict, NotFound
from paas.models import JOB_RUN_TRANSITIONS, JobRunState, PlatformJobRun
from paas.platform_jobs import PlatformJob

KEEP_RUNS = 20  # runs kept per job
STALE = 6 * 3600.0  # a run another host's scheduler began this long ago is taken as lost
UNFINISHED = (JobRunState.REQUESTED, JobRunState.RUNNING)


def this_runner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def slot(job: PlatformJob, moment: float) -> float:
    """The due time on the job's grid at or before `moment`."""
    return math.floor(moment / job.every_seconds) * job.every_seconds


def next_slot(job: PlatformJob, moment: float) -> float:
    return slot(job, moment) + job.every_seconds


def last(db: Session, name: str) -> PlatformJobRun | None:
    return db.scalar(select(PlatformJobRun).where(PlatformJobRun.name == name)
                     .order_by(PlatformJobRun.started_at.desc(), PlatformJobRun.id.desc())
                     .limit(1))


def unfinished(db: Session, name: str) -> PlatformJobRun | None:
    return db.scalar(select(PlatformJobRun).where(PlatformJobRun.name == name,
                                                  PlatformJobRun.state == JobRunState.RUNNING))


def requested(db: Session, name: str) -> PlatformJobRun | None:
    return db.scalar(select(PlatformJobRun).where(PlatformJobRun.name == name,
                                                  PlatformJobRun.state == JobRunState.REQUESTED)
                     .order_by(PlatformJobRun.id).limit(1))


def due(db: Session, job: PlatformJob, moment: float) -> float | None:
    """The slot to claim now, if any: none while a run goes or once this slot is claimed."""
    if unfinished(db, job.name) is not None:
        return None
    wanted = slot(job, moment)
    taken = db.scalar(select(PlatformJobRun.id).where(PlatformJobRun.name == job.name,
                                                      PlatformJobRun.due_at == wanted))
    return None if taken is not None else wanted


def claim(db: Session, job: PlatformJob, due_at: float, moment: float,
          runner: str) -> PlatformJobRun | None:
    """Claims slot `due_at` for `runner`; None when another claimed it (or a run goes)."""
    if unfinished(db, job.name) is not None:
        return None
    run = PlatformJobRun(name=job.name, due_at=due_at, started_at=moment, runner=runner,
                         state=JobRunState.RUNNING)
    # The claim: a second insert of (name, due_at), by another clock, fails its transaction.
    db.add(run)
    db.flush()
    _prune(db, job.name)
    return run


def take_requested(db: Session, job: PlatformJob, moment: float,
                   runner: str) -> PlatformJobRun | None:
    """Starts the job's oldest requested run, unless one runs."""
    if unfinished(db, job.name) is not None:
        return None
    run = requested(db, job.name)
    if run is None:
        return None
    _move(run, JobRunState.RUNNING)
    run.started_at, run.runner = moment, runner
    return run


def request(db: Session, job: PlatformJob, moment: float, *, trigger: str = "manual",
            coalesce: bool = False) -> PlatformJobRun:
    """A run of `job` that the next tick of a scheduler starts. Refused while one waits,
    unless `coalesce` (then that one stands for both: many builds, one layer GC)."""
    waiting = requested(db, job.name)
    if waiting is not None and coalesce:
        return waiting
    if waiting is not None:
        raise Conflict(f"a run of {job.name} is requested already: the scheduler starts it "
                       "within a tick")
    run = PlatformJobRun(name=job.name, due_at=moment, started_at=moment, trigger=trigger,
                         state=JobRunState.REQUESTED)
    db.add(run)
    db.flush()
    return run


def finish(db: Session, run_id: int, ok: bool, summary: str, moment: float) -> None:
    run = db.get(PlatformJobRun, run_id)
    if run is None or run.state != JobRunState.RUNNING:
        return  # failed meanwhile as lost: its outcome came too late
    _move(run, JobRunState.SUCCEEDED if ok else JobRunState.FAILED)
    run.finished_at, run.summary = moment, summary[:2000]


def fail_lost(db: Session, moment: float, alive: set[int]) -> list[str]:
    """Fails the running runs whose scheduler process is gone; returns their job names.
    `alive`: this process's own runs (its pid is alive, the runs it holds are not lost)."""
    host = socket.gethostname()
    lost = []
    for run in db.scalars(select(PlatformJobRun).where(
            PlatformJobRun.state == JobRunState.RUNNING)):
        runner_host, _, pid = run.runner.rpartition(":")
        mine = runner_host == host and pid.isdigit()
        if mine and int(pid) == os.getpid():
            gone = run.id not in alive
        elif mine:
            gone = not os.path.exists(f"/proc/{pid}")
        else:
            gone = moment - run.started_at > STALE
        if gone:
            _move(run, JobRunState.FAILED)
            run.finished_at = moment
            run.summary = f"its scheduler ({run.runner}) stopped during the run"
            lost.append(run.name)
    return lost


def _move(run: PlatformJobRun, to: JobRunState) -> None:
    if to not in JOB_RUN_TRANSITIONS[JobRunState(run.state)]:
        raise Conflict(f"a run of {run.name} that is {run.state} cannot become {to}")
    run.state = to


def _prune(db: Session, name: str) -> None:
    old = db.scalars(select(PlatformJobRun).where(
        PlatformJobRun.name == name, PlatformJobRun.state.not_in(UNFINISHED))
        .order_by(PlatformJobRun.started_at.desc()).offset(KEEP_RUNS))
    for run in list(old):
        db.delete(run)


def find(jobs: list[PlatformJob], name: str) -> PlatformJob:
    for job in jobs:
        if job.name == name:
            return job
    raise NotFound(f"no platform job {name!r}: `paas admin:jobs` lists them")


def to_dict(db: Session, job: PlatformJob, moment: float) -> dict[str, Any]:
    run = last(db, job.name)
    running = unfinished(db, job.name) or requested(db, job.name)
    claimed_now = due(db, job, moment) is None
    return {
        "name": job.name,
        "description": job.description,
        "every_seconds": job.every_seconds,
        "next_run": None if running else (next_slot(job, moment) if claimed_now else moment),
        "last_run": None if run is None else {
            "state": run.state, "trigger": run.trigger, "runner": run.runner,
            "due_at": run.due_at, "started_at": run.started_at,
            "finished_at": run.finished_at, "summary": run.summary,
            "duration": (round(run.finished_at - run.started_at, 3)
                         if run.finished_at else None)},
    }
