"""The reaper: fails builds whose worker died or that no worker took, and releases that never
went live.

A building build's worker refreshes the build's lease in Redis (`paas/builder/lease.py`); the
broker would redeliver a dead worker's task only after its visibility timeout (longer than the
build time limit), so the API watches the leases and fails a build whose lease stayed gone for
a whole lease lifetime. The pusher hears it as a rejected push, and the app keeps serving its
current release.

A pending release whose dynos were due (created, or its release phase passed) more than
PAAS_BOOT_TIMEOUT + PAAS_RELEASE_MARGIN ago and that is still not live fails as a platform
error: an agent that could not start its dynos, or none running, never leaves a push waiting.
Nor does a build still pending (no worker took it) PAAS_BUILD_QUEUE_TIMEOUT after it was queued,
nor a release phase still running PAAS_RELEASE_PHASE_TIMEOUT after its release was created
(its one-off is stopped).

It also watches the nodes (`paas/scheduling.py:sweep`): a node lost for PAAS_NODE_GRACE has
its dynos assigned to live nodes, and its rows that no longer serve are dropped.

It runs as the platform job `reaper` (`reaper_job`), every PAAS_BUILD_HEARTBEAT, on the one
scheduler (`paas/clock.py`)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import redis
from sqlalchemy import select
from sqlalchemy.orm import Session

from paas import builds, releases, scheduling
from paas.builder import lease
from paas.errors import PaasError
from paas.events import Events
from paas.models import Build, BuildStatus, now
from paas.platform_jobs import PlatformJob
from paas.settings import Settings

if TYPE_CHECKING:
    from paas.api.context import Context

log = logging.getLogger("paas.reaper")

Lifespan = Callable[[Any], contextlib.AbstractAsyncContextManager[None]]
T = TypeVar("T")


class Database(Protocol):
    """Reads, and writes that are serial and send their events once committed (the API's
    `Context` is one)."""

    def read(self) -> AbstractContextManager[Session]: ...

    def write(self, work: Callable[[Session, Events], T]) -> T: ...


def unclaimed_message(seconds: float) -> str:
    return (f"no build worker took the build within {seconds:g} s (PAAS_BUILD_QUEUE_TIMEOUT): "
            "is the worker running? The app keeps its current release: push again to retry")


def lost_message(seconds: float) -> str:
    return (f"the build worker stopped answering (no heartbeat for {seconds:g} s); "
            "the app keeps its current release: push again to retry")


class Reaper:
    def __init__(self, database: Database, client: redis.Redis, settings: Settings) -> None:
        self.database = database
        self.redis = client
        self.settings = settings
        self.interval = settings.build_heartbeat
        self.ttl = lease.ttl(self.interval)
        # build id -> when its lease was first seen gone
        self.suspects: dict[str, float] = {}
        self.queue_timeout = settings.build_queue_timeout
        self.release_limit = settings.boot_timeout + settings.release_margin
        self.phase_limit = settings.release_phase_timeout
        self.release_limit_why = (f"PAAS_BOOT_TIMEOUT {settings.boot_timeout:g} s + "
                                  f"PAAS_RELEASE_MARGIN {settings.release_margin:g} s")

    def sweep(self) -> list[str]:
        """One look at the building builds; returns the ids it failed."""
        with self.database.read() as db:
            query = select(Build.id, Build.started_at).where(
                Build.status == BuildStatus.BUILDING)
            building = list(db.execute(query))
        try:
            gone = {build_id for build_id, started in building
                    if now() - (started or 0) > self.ttl
                    and not self.redis.exists(lease.lease_key(build_id))}
        except redis.RedisError:
            return []  # without the leases, nothing can be judged: wait for Redis
        moment = now()
        self.suspects = {b: self.suspects.get(b, moment) for b in gone}
        dead = [b for b, since in self.suspects.items() if moment - since >= self.ttl]
        return [b for b in dead if self._fail(b)]

    def sweep_queue(self) -> list[str]:
        """Fails the builds that no worker took in time; returns their ids."""
        with self.database.read() as db:
            waiting = builds.waiting_since_before(db, now() - self.queue_timeout)
        message = unclaimed_message(self.queue_timeout)
        return [b for b in waiting if self._fail(b, BuildStatus.PENDING, message)]

    def _fail(self, build_id: str, status: BuildStatus = BuildStatus.BUILDING,
              message: str | None = None) -> bool:
        message = message or lost_message(self.ttl * 2)

        def work(db, events) -> bool:  # type: ignore[no-untyped-def]
            build = builds.get(db, build_id)
            if build.status != status:
                return False
            builds.fail(db, build, message, events)
            return True

        try:
            failed = self.database.write(work)
        except (PaasError, redis.RedisError) as error:
            log.warning("reaper: could not fail build %s: %s", build_id, error)
            return False
        self.suspects.pop(build_id, None)
        if failed:
            log.warning("reaper: build %s failed: %s", build_id, message)
        return failed

    def sweep_releases(self) -> list[str]:
        """Fails the pending releases past their deadline; returns their errors."""
        with self.database.read() as db:
            late = releases.overdue(db, now(), self.release_limit)
        return self._fail_releases(late, lambda db, release_id, events: releases.expire(
            db, release_id, now(), self.release_limit, self.release_limit_why, events))

    def sweep_release_phases(self) -> list[str]:
        """Fails the pending releases whose release phase ran too long; returns their errors."""
        with self.database.read() as db:
            late = releases.phase_overdue(db, now(), self.phase_limit)
        return self._fail_releases(late, lambda db, release_id, events: releases.expire_phase(
            db, release_id, now(), self.phase_limit, events))

    def _fail_releases(self, release_ids: list[int],
                       expire: Callable[[Session, int, Events], str | None]) -> list[str]:
        """Each release failed by `expire` in a transaction of its own; their errors."""
        errors = []
        for release_id in release_ids:
            def work(db: Session, events: Events, rid: int = release_id) -> str | None:
                error = expire(db, rid, events)
                if error:  # a failed release's dynos are no longer wanted
                    events.desired_changed()
                return error

            try:
                error = self.database.write(work)
            except (PaasError, redis.RedisError) as failure:
                log.warning("reaper: could not fail release %s: %s", release_id, failure)
                continue
            if error:
                log.warning("reaper: release %s failed: %s", release_id, error)
                errors.append(error)
        return errors

    def sweep_nodes(self) -> set[int]:
        """Moves the dynos of lost nodes; returns the ids of apps whose dyno rows changed."""
        settings = self.settings

        def work(db: Session, events: Events) -> set[int]:
            changed = scheduling.sweep(db, now(), settings.node_grace, settings.dyno_port)
            if changed:
                events.routes_changed()
                events.desired_changed()
            return changed

        return self.database.write(work)

    def sweep_all(self) -> str:
        """Every sweep once (the `reaper` platform job); what it did, in one line. A sweep
        that fails does not stop the others; the run then fails naming it."""
        done, broken = [], []
        for what, sweep in (("build(s) failed", self.sweep),
                            ("unclaimed build(s) failed", self.sweep_queue),
                            ("overdue release(s) failed", self.sweep_releases),
                            ("release phase(s) stopped", self.sweep_release_phases),
                            ("app(s) with dynos moved off lost nodes", self.sweep_nodes)):
            try:
                found = sweep()
            except Exception as error:  # the other sweeps still run
                log.exception("reaper: %s failed", sweep.__name__)
                broken.append(f"{sweep.__name__}: {error}")
                continue
            if found:
                done.append(f"{len(found)} {what}")
        if broken:
            raise RuntimeError("; ".join(done + broken))
        return "; ".join(done) or "nothing to reap"


def reaper_job(settings: Settings) -> PlatformJob:
    """The reaper as a platform job, every PAAS_BUILD_HEARTBEAT (its sweeps' memory of
    suspect builds is kept between runs in this process)."""
    reapers: dict[int, Reaper] = {}

    def run(ctx: Context) -> str:
        reaper = reapers.get(id(ctx)) or reapers.setdefault(
            id(ctx), Reaper(ctx, ctx.redis, settings))
        return reaper.sweep_all()

    return PlatformJob(name="reaper", every_seconds=settings.build_heartbeat, run=run,
                       description="fails lost and unclaimed builds and overdue releases, "
                                   "moves the dynos of lost nodes")


def chain(*lifespans: Lifespan) -> Lifespan:
    """One Starlette lifespan that enters `lifespans` in order and leaves them in reverse."""
    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            for each in lifespans:
                await stack.enter_async_context(each(app))
            yield

    return lifespan
