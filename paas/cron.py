"""An app's cron jobs: app.json's `cron` list of its current release, each run a one-off dyno
(`cron.N`) of the release current when it is due, with the app's config vars; its output goes
to the app's log, and `paas[cron]` lines say when it started, how it exited and how long it
took.

A due time is claimed once in the database (the unique (job, due_at) of `CronRun`), so it
runs once whichever scheduler process claims it and however often they restart. At most one
run of a job at a time: a due time met while the job's last run still goes is claimed as
skipped, with a log line. A due time the schedulers missed (none ran then) still runs if it
is at most CATCH_UP old (only the newest such one: no burst after an outage). Jobs of an app
in maintenance or scaled to nothing run all the same (one-offs need no formation)."""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from paas import oneoffs
from paas.crontab import Schedule
from paas.errors import Conflict, NotFound
from paas.events import Events
from paas.models import (
    CRON_RUN_TRANSITIONS,
    App,
    CronJob,
    CronRun,
    CronRunState,
    OneOff,
    OneOffState,
    Release,
)
from paas.wire import CronEntry, Slug

SOURCE = "paas[cron]"
CATCH_UP = 15 * 60.0  # seconds: a missed due time younger than this still runs
KEEP_RUNS = 50  # finished or skipped runs kept per job


def key_of(entry: CronEntry) -> str:
    """A job's id: the same schedule, zone and command keep the same id across deploys."""
    return key_of_entry(entry.schedule, entry.tz, entry.command)


def key_of_entry(schedule: str, tz: str, command: str) -> str:
    return hashlib.sha256(f"{schedule}\n{tz}\n{command}".encode()).hexdigest()[:8]


def schedule_of(job: CronJob) -> Schedule:
    return Schedule(job.schedule, job.tz)


def sync(db: Session, app: App, release: Release) -> None:
    """The app's jobs become those of `release` (just made current): new ones are added (due
    from now on), gone ones removed with their runs; an unchanged one keeps its runs."""
    wanted: dict[str, tuple[int, CronEntry]] = {}
    for position, entry in enumerate(Slug.of(release.slug).app_json.cron):
        wanted.setdefault(key_of(entry), (position, entry))  # the same job twice runs once
    for job in jobs(db, app):
        if job.key not in wanted:
            db.delete(job)
        else:
            job.position = wanted.pop(job.key)[0]
    for key, (position, entry) in wanted.items():
        db.add(CronJob(app_id=app.id, key=key, command=entry.command, schedule=entry.schedule,
                       tz=entry.tz, position=position))
    db.flush()


def jobs(db: Session, app: App) -> list[CronJob]:
    return list(db.scalars(select(CronJob).where(CronJob.app_id == app.id)
                           .order_by(CronJob.position)))


def every_job(db: Session) -> list[CronJob]:
    return list(db.scalars(select(CronJob).order_by(CronJob.app_id, CronJob.position)))


def get(db: Session, app: App, key: str) -> CronJob:
    job = db.scalar(select(CronJob).where(CronJob.app_id == app.id, CronJob.key == key))
    if job is None:
        raise NotFound(f"{app.name} has no cron job {key}: `paas cron -a {app.name}` lists "
                       "them (app.json's \"cron\" of its current release)")
    return job


def last_run(db: Session, job: CronJob) -> CronRun | None:
    return db.scalar(select(CronRun).where(CronRun.job_id == job.id)
                     .order_by(CronRun.started_at.desc(), CronRun.id.desc()).limit(1))


def _running(db: Session, job: CronJob) -> CronRun | None:
    return db.scalar(select(CronRun).where(CronRun.job_id == job.id,
                                           CronRun.state == CronRunState.RUNNING))


# ---- what the scheduler does ---------------------------------------------------------------


def due_now(job: CronJob, moment: float, catch_up: float = CATCH_UP) -> float | None:
    """The due time of `job` to claim at `moment`: its newest one not older than `catch_up`
    and not before the job existed."""
    return schedule_of(job).last_due(max(job.created_at, moment - catch_up), moment)


def claimed(db: Session, job: CronJob, due: float) -> bool:
    return bool(db.scalar(select(exists().where(CronRun.job_id == job.id,
                                                CronRun.due_at == due))))


def claim(db: Session, job: CronJob, due: float, moment: float, events: Events) -> CronRun | None:
    """Claims `job`'s due time `due`: starts its run, or skips it while the last run goes.
    Raises IntegrityError when another scheduler claimed it first (the transaction fails)."""
    running = _running(db, job)
    run = CronRun(job_id=job.id, due_at=due, started_at=moment)
    if running is not None:
        run.state = CronRunState.SKIPPED
        run.finished_at = moment
        run.note = f"{running.dyno} was still running"
    # The claim: a second insert of (job, due_at), by another clock, fails its transaction.
    db.add(run)
    db.flush()
    app = db.get(App, job.app_id)
    assert app is not None
    if running is not None:
        events.app_log(app.name, SOURCE, f"Skipping job {job.key} due {_when(due, job)}: "
                       f"{run.note} (at most one run of a job at a time)")
    else:
        _start(db, app, job, run, events, f"due {_when(due, job)}")
    _prune(db, job)
    return run


def _start(db: Session, app: App, job: CronJob, run: CronRun, events: Events,
           why: str) -> None:
    release = db.get(Release, app.current_release_id) if app.current_release_id else None
    if release is None:  # the app lost its release (destroyed meanwhile): nothing to run
        _move(run, CronRunState.FINISHED)
        run.finished_at, run.note = run.started_at, "the app has no release"
        return
    oneoff = oneoffs.create(db, app, release, job.command, process_type="cron",
                            env={"PAAS_CRON_JOB": job.key})
    run.oneoff_id = oneoff.id
    run.dyno = f"{oneoff.type}.{oneoff.number}"
    events.app_log(app.name, SOURCE, f"Starting {run.dyno} of v{release.version} for job "
                   f"{job.key} ({why}): {job.command}")
    events.desired_changed()


def finish(db: Session, moment: float, events: Events) -> list[CronRun]:
    """The running runs whose one-off exited are finished: exit status and duration in the
    app's log. Returns them."""
    done = []
    for run in db.scalars(select(CronRun).where(CronRun.state == CronRunState.RUNNING)):
        oneoff = db.get(OneOff, run.oneoff_id) if run.oneoff_id is not None else None
        if oneoff is not None and oneoff.state != OneOffState.EXITED:
            continue
        _move(run, CronRunState.FINISHED)
        run.exit_code = oneoff.exit_code if oneoff is not None else None
        run.finished_at = (oneoff.finished_at if oneoff is not None else None) or moment
        job = run.job
        app = db.get(App, job.app_id)
        if app is not None:
            status = "an unknown status" if run.exit_code is None else \
                f"status {run.exit_code}"
            events.app_log(app.name, SOURCE, f"{run.dyno} of job {job.key} exited with "
                           f"{status} after {duration(run):.1f} s")
        done.append(run)
    db.flush()
    return done


def run_now(db: Session, app: App, key: str, moment: float, events: Events) -> CronRun:
    """`cron:run ID`: a run of the job now (refused while one goes: one run at a time)."""
    job = get(db, app, key)
    running = _running(db, job)
    if running is not None:
        raise Conflict(f"job {key} is running already ({running.dyno}): at most one run of a "
                       f"job at a time; `paas ps:stop {running.dyno} -a {app.name}` stops it")
    run = CronRun(job_id=job.id, due_at=moment, started_at=moment, trigger="manual")
    db.add(run)
    db.flush()
    _start(db, app, job, run, events, "run now")
    db.flush()
    return run


def _move(run: CronRun, to: CronRunState) -> None:
    if to not in CRON_RUN_TRANSITIONS[CronRunState(run.state)]:
        raise Conflict(f"a cron run that is {run.state} cannot become {to}")
    run.state = to


def _prune(db: Session, job: CronJob) -> None:
    old = db.scalars(select(CronRun).where(CronRun.job_id == job.id,
                                           CronRun.state != CronRunState.RUNNING)
                     .order_by(CronRun.started_at.desc()).offset(KEEP_RUNS))
    for run in list(old):
        db.delete(run)


def _when(moment: float, job: CronJob) -> str:
    zone = schedule_of(job).zone
    return dt.datetime.fromtimestamp(moment, zone).strftime(f"%Y-%m-%d %H:%M:%S {job.tz}")


def duration(run: CronRun) -> float:
    return max(0.0, (run.finished_at or time.time()) - run.started_at)


# ---- what the API shows --------------------------------------------------------------------


def run_dict(run: CronRun | None) -> dict[str, Any] | None:
    if run is None:
        return None
    return {"dyno": run.dyno, "state": run.state, "trigger": run.trigger,
            "due_at": run.due_at, "started_at": run.started_at,
            "finished_at": run.finished_at, "exit_code": run.exit_code,
            "duration": round(duration(run), 3) if run.finished_at else None,
            "note": run.note}


def to_dict(db: Session, job: CronJob, moment: float) -> dict[str, Any]:
    return {"id": job.key, "schedule": job.schedule, "tz": job.tz, "command": job.command,
            "next_run": schedule_of(job).due_after(max(moment, job.created_at)),
            "last_run": run_dict(last_run(db, job))}


def listing(db: Session, app: App, moment: float) -> list[dict[str, Any]]:
    return [to_dict(db, job, moment) for job in jobs(db, app)]
