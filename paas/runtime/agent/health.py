"""Whether a starting dyno is up: a web dyno once it accepts connections on $PORT, or once
app.json's HTTP checks pass in order; any other type at once. One that is not up within the
boot timeout failed to boot (R10). And the memory kills of a dyno's cgroup (R15).

HTTP checks run on a pool of their own; their futures are the reconcile thread's."""

from __future__ import annotations

import enum
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import NamedTuple

from paas.runtime import DynoStatus
from paas.runtime.agent.keys import DynoKey
from paas.runtime.agent.logship import LogShipper
from paas.runtime.agent.notes import NoteBook
from paas.runtime.health import accepts, http_check
from paas.wire import DesiredDyno, HealthCheck

CHECK_WORKERS = 8


class Boot(enum.Enum):
    WAITING = "waiting"
    UP = "up"
    FAILED = "failed"


class Verdict(NamedTuple):
    boot: Boot
    reason: str = ""  # why it failed


WAITING = Verdict(Boot.WAITING)
UP = Verdict(Boot.UP)


class BootChecks:
    def __init__(self, notes: NoteBook, log: LogShipper, boot_timeout: float) -> None:
        self.notes = notes
        self.log = log
        self.boot_timeout = boot_timeout
        self.pool = ThreadPoolExecutor(CHECK_WORKERS, thread_name_prefix="health")
        self.running: dict[str, Future[str]] = {}  # dyno id -> its HTTP check under way

    def verdict(self, dyno: DynoStatus, key: DynoKey, desired: DesiredDyno) -> Verdict:
        """Of a dyno noted starting."""
        verdict = self._checked(dyno, key, desired)
        if verdict.boot == Boot.WAITING and time.time() - dyno.started_at > self.boot_timeout:
            return Verdict(Boot.FAILED, "Error R10 (Boot timeout) -> Web process failed to "
                           f"bind to $PORT within {self.boot_timeout:g} seconds of launch")
        return verdict

    def forget_all_but(self, present: set[str]) -> None:
        for dyno_id in self.running.keys() - present:
            del self.running[dyno_id]

    def shutdown(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    def _checked(self, dyno: DynoStatus, key: DynoKey, desired: DesiredDyno) -> Verdict:
        if key.type != "web":
            return UP
        if desired.healthchecks:
            return self._http(dyno, key, desired)
        return UP if accepts(dyno.ip, desired.port) else WAITING

    def _http(self, dyno: DynoStatus, key: DynoKey, desired: DesiredDyno) -> Verdict:
        notes = self.notes.of(dyno.id)
        check = desired.healthchecks[notes.check]
        future = self.running.get(dyno.id)
        if future is None:
            if time.time() >= max(dyno.started_at + check.initialDelay, notes.next_check):
                self.running[dyno.id] = self.pool.submit(http_check, dyno.ip, desired.port,
                                                         check)
            return WAITING
        if not future.done():
            return WAITING
        del self.running[dyno.id]
        failure = future.result()
        if not failure:
            return self._passed(dyno, key, desired, check)
        return self._failed(dyno, key, check, failure)

    def _passed(self, dyno: DynoStatus, key: DynoKey, desired: DesiredDyno,
                check: HealthCheck) -> Verdict:
        self.log.platform(key, f"Health check {check.path} passed")
        notes = self.notes.of(dyno.id)
        if notes.check + 1 < len(desired.healthchecks):
            self.notes.update(dyno.id, check=notes.check + 1, attempts=0, next_check=0.0)
            return WAITING
        return UP

    def _failed(self, dyno: DynoStatus, key: DynoKey, check: HealthCheck,
                failure: str) -> Verdict:
        attempts = self.notes.of(dyno.id).attempts + 1
        self.log.platform(key, f"Health check {check.path} failed "
                               f"(attempt {attempts} of {check.attempts}): {failure}")
        if attempts >= check.attempts:
            return Verdict(Boot.FAILED, f"health check GET {check.path} failed "
                                        f"{attempts} times: {failure}")
        self.notes.update(dyno.id, attempts=attempts, next_check=time.time() + check.wait)
        return WAITING


def memory_kill_line(dyno: DynoStatus) -> str:
    """R15, for new kills of the dyno's cgroup by its memory limit."""
    memory = int(dyno.metadata.get("memory_mb", 0)) or None
    return ("Error R15 (Memory quota vastly exceeded) -> a process was killed for using more "
            "than the dyno's memory" + (f" ({memory} MB)" if memory else ""))


