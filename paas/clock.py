"""The one scheduler of periodic work: the apps' cron jobs (`paas/cron.py`) and the platform's
own jobs (`paas/platform_jobs.py`, recorded by `paas/job_runs.py`). No other part of the
platform keeps a timer loop of its own.

A role, not a daemon: it runs on a thread of the API process (`clock_lifespan`, the API is the
database's one writer and its writes go through `Context.write`), or on its own with `python
-m paas.clock` (PAAS_CLOCK_IN_API=0 turns the API's off). Either way every due run is claimed
in the database first, so any number of clocks, restarted at any time, run each due time
once. Every PAAS_CLOCK_TICK (1 s) it: finishes the cron runs whose one-off exited, claims the
cron jobs that are due, and claims and starts the platform jobs that are due, each on a
thread of its own (a slow layer GC does not hold the cron jobs up)."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from paas import cron, job_runs
from paas.api.context import Context
from paas.crontab import Schedule
from paas.errors import PaasError
from paas.events import Events
from paas.models import CronJob, CronRun, CronRunState, OneOff, OneOffState
from paas.platform_jobs import PlatformJob, platform_jobs

log = logging.getLogger("paas.clock")
# Set to start a tick now (a requested run in this process: layer GC after a build).
_wake = threading.Event()


def wake() -> None:
    """The clock of this process looks for due work now rather than at its next tick."""
    _wake.set()


class Clock:
    def __init__(self, ctx: Context, jobs: list[PlatformJob], *, tick: float = 1.0,
                 runner: str | None = None) -> None:
        self.ctx = ctx
        self.jobs = jobs
        self.tick_seconds = tick
        self.runner = runner or job_runs.this_runner()
        # cron job (id, schedule, zone) -> the next due time to look at
        self.next_due: dict[tuple[int, str, str], float] = {}
        # platform job name -> the id of the run this process is running
        self.running: dict[str, int] = {}
        self.lock = threading.Lock()
        self.threads: list[threading.Thread] = []

    # ---- one look --------------------------------------------------------------------

    def tick(self, moment: float | None = None) -> None:
        moment = time.time() if moment is None else moment
        for step in (self.finish_cron_runs, self.claim_cron_jobs, self.start_platform_jobs):
            try:
                step(moment)
            except IntegrityError:  # another clock claimed the same due time first
                log.info("clock: %s: claimed by another scheduler", step.__name__)
            except OperationalError as error:  # another clock held the database: next tick
                log.info("clock: %s waits for the next tick: %s", step.__name__, error)
            except Exception:  # the clock must outlive any one bad step
                log.exception("clock: %s failed", step.__name__)

    def finish_cron_runs(self, moment: float) -> None:
        with self.ctx.read() as db:
            exited = db.scalar(select(CronRun.id).outerjoin(
                OneOff, OneOff.id == CronRun.oneoff_id).where(
                CronRun.state == CronRunState.RUNNING,
                (OneOff.id.is_(None)) | (OneOff.state == OneOffState.EXITED)).limit(1))
        if exited is not None:
            self.ctx.write(lambda db, events: cron.finish(db, moment, events))

    def claim_cron_jobs(self, moment: float) -> None:
        with self.ctx.read() as db:
            every = cron.every_job(db)
            due = [(job.id, when) for job in every if (when := self._due(db, job, moment))]
        for job_id, when in due:
            def work(db: Session, events: Events, j: int = job_id, w: float = when) -> None:
                self._claim(db, events, j, w, moment)

            self.ctx.write(work)

    def _due(self, db: Session, job: CronJob, moment: float) -> float | None:
        """`job`'s due time to claim now (None: not due, or claimed already)."""
        memo = (job.id, job.schedule, job.tz)
        if moment < self.next_due.get(memo, 0.0):
            return None
        schedule = Schedule(job.schedule, job.tz)
        self.next_due[memo] = schedule.due_after(moment)
        when = cron.due_now(job, moment)
        return when if when is not None and not cron.claimed(db, job, when) else None

    @staticmethod
    def _claim(db: Session, events: Events, job_id: int, when: float, moment: float) -> None:
        job = db.get(CronJob, job_id)
        # Removed by a deploy meanwhile: nothing to run; claimed meanwhile: run already.
        if job is not None and not cron.claimed(db, job, when):
            cron.claim(db, job, when, moment, events)

    def start_platform_jobs(self, moment: float) -> None:
        with self.lock:
            mine = set(self.running.values())
        self.ctx.write(lambda db, _events: job_runs.fail_lost(db, moment, mine))
        for job in self.jobs:
            with self.lock:
                if job.name in self.running:
                    continue
            run_id = self._claim_platform(job, moment)
            if run_id is not None:
                self._start(job, run_id)

    def _claim_platform(self, job: PlatformJob, moment: float) -> int | None:
        with self.ctx.read() as db:
            slot = job_runs.due(db, job, moment)
            wanted = job_runs.requested(db, job.name) is not None
        if slot is None and not wanted:
            return None

        def work(db: Session, _events: Events) -> int | None:
            run = job_runs.take_requested(db, job, moment, self.runner) if wanted else None
            run = run or (job_runs.claim(db, job, slot, moment, self.runner)
                          if slot is not None else None)
            db.flush()
            return run.id if run is not None else None

        return self.ctx.write(work)

    def _start(self, job: PlatformJob, run_id: int) -> None:
        with self.lock:
            self.running[job.name] = run_id
        thread = threading.Thread(target=self._run, args=(job, run_id),
                                  name=f"clock-{job.name}", daemon=True)
        self.threads = [t for t in self.threads if t.is_alive()] + [thread]
        thread.start()

    def _run(self, job: PlatformJob, run_id: int) -> None:
        try:
            summary, ok = job.run(self.ctx) or "", True
        except PaasError as error:
            summary, ok = error.message, False
        except Exception as error:  # recorded as the run's failure; the clock goes on
            log.exception("clock: platform job %s failed", job.name)
            summary, ok = f"{type(error).__name__}: {error}", False
        try:
            self.ctx.write(lambda db, _events: job_runs.finish(db, run_id, ok, summary,
                                                               time.time()))
        except Exception:
            log.exception("clock: could not record the end of %s", job.name)
        finally:
            with self.lock:
                self.running.pop(job.name, None)

    # ---- the loop --------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        log.info("clock: %d platform jobs (%s), a tick every %g s", len(self.jobs),
                 ", ".join(j.name for j in self.jobs), self.tick_seconds)
        while not stop.is_set():
            _wake.clear()
            self.tick()
            _wake.wait(self.tick_seconds)

    def wait_for_jobs(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))


def for_context(ctx: Context) -> Clock:
    settings = ctx.settings
    return Clock(ctx, platform_jobs(settings), tick=settings.clock_tick)


Lifespan = Callable[[Any], contextlib.AbstractAsyncContextManager[None]]


def clock_lifespan(ctx: Context) -> Lifespan:
    """The clock on a thread of the API process while it serves (unless PAAS_CLOCK_IN_API=0)."""

    @contextlib.asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        if not ctx.settings.clock_in_api:
            yield
            return
        stop = threading.Event()
        clock = for_context(ctx)
        thread = threading.Thread(target=clock.run, args=(stop,), name="clock", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            wake()
            thread.join(10)
            clock.wait_for_jobs(10)

    return lifespan


def main() -> None:
    """`python -m paas.clock`: the clock on its own (beside or instead of the API's)."""
    from paas import settings as settings_

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = settings_.load()
    ctx = Context.create(settings)
    stop = threading.Event()
    def stopping(*_args: object) -> None:
        stop.set()
        wake()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, stopping)
    clock = for_context(ctx)
    clock.run(stop)
    clock.wait_for_jobs(30)


if __name__ == "__main__":
    main()
