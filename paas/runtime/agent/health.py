"""Whether a starting dyno is up: a web dyno once it accepts connections on $PORT, or once
app.json's HTTP checks pass in order; any other type at once. One that is not up within the
boot timeout failed to boot (R10). And the memory kills of a dyno's cgroup (R15).

Checks run on a pool of their own, from the pass that first sees a dyno starting: the port
probe connects every few milliseconds, an HTTP check waits for its time in its thread. Each
sets `wake` when it ends, so the agent's loop takes the verdict (and reports it) at once, not
on its next interval. Their futures are the reconcile thread's."""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, NamedTuple

from paas.runtime import DynoStatus
from paas.runtime.agent.keys import DynoKey
from paas.runtime.agent.logship import LogShipper
from paas.runtime.agent.notes import NoteBook
from paas.runtime.health import http_check, wait_accepting
from paas.wire import DesiredDyno, HealthCheck

# A probe holds a thread while its dyno boots: room for a `ps:scale web=N` of many at once.
CHECK_WORKERS = 32


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
    def __init__(self, notes: NoteBook, log: LogShipper, boot_timeout: float,
                 wake: threading.Event | None = None) -> None:
        self.notes = notes
        self.log = log
        self.boot_timeout = boot_timeout
        self.wake = wake or threading.Event()
        self.pool = ThreadPoolExecutor(CHECK_WORKERS, thread_name_prefix="health")
        # dyno id -> its check under way: the port probe (True: it accepts) or an HTTP check
        # ("" passed, else what failed), and what cancels it
        self.running: dict[str, Future[Any]] = {}
        self.cancels: dict[str, threading.Event] = {}

    def verdict(self, dyno: DynoStatus, key: DynoKey, desired: DesiredDyno) -> Verdict:
        """Of a dyno noted starting."""
        verdict = self._checked(dyno, key, desired)
        if verdict.boot == Boot.WAITING and time.time() - dyno.started_at > self.boot_timeout:
            return Verdict(Boot.FAILED, "Error R10 (Boot timeout) -> Web process failed to "
                           f"bind to $PORT within {self.boot_timeout:g} seconds of launch")
        return verdict

    def forget_all_but(self, present: set[str]) -> None:
        for dyno_id in self.running.keys() - present:
            self._forget(dyno_id)

    def shutdown(self) -> None:
        for cancel in self.cancels.values():
            cancel.set()
        self.pool.shutdown(wait=True, cancel_futures=True)

    def _checked(self, dyno: DynoStatus, key: DynoKey, desired: DesiredDyno) -> Verdict:
        if key.type != "web":
            return UP
        if desired.healthchecks:
            return self._http(dyno, key, desired)
        return self._accepts(dyno, desired)

    def _accepts(self, dyno: DynoStatus, desired: DesiredDyno) -> Verdict:
        future = self.running.get(dyno.id)
        if future is None:
            # Until a little past the boot timeout: the pass then says R10 (`verdict`).
            until = dyno.started_at + self.boot_timeout + 1
            self._submit(dyno.id, lambda cancel: wait_accepting(dyno.ip, desired.port, until,
                                                                cancel))
            return WAITING
        if not future.done():
            return WAITING
        self._forget(dyno.id)
        return UP if future.result() else WAITING

    def _http(self, dyno: DynoStatus, key: DynoKey, desired: DesiredDyno) -> Verdict:
        notes = self.notes.of(dyno.id)
        check = desired.healthchecks[notes.check]
        future = self.running.get(dyno.id)
        if future is None:
            due = max(dyno.started_at + check.initialDelay, notes.next_check)
            self._submit(dyno.id, lambda cancel: _http_when_due(dyno.ip, desired.port, check,
                                                                due, cancel))
            return WAITING
        if not future.done():
            return WAITING
        self._forget(dyno.id)
        failure = future.result()
        if failure is None:  # cancelled
            return WAITING
        if not failure:
            return self._passed(dyno, key, desired, check)
        return self._failed(dyno, key, check, failure)

    def _submit(self, dyno_id: str, check: Callable[[threading.Event], Any]) -> None:
        cancel = self.cancels[dyno_id] = threading.Event()
        future = self.running[dyno_id] = self.pool.submit(check, cancel)
        future.add_done_callback(lambda _: self.wake.set())

    def _forget(self, dyno_id: str) -> None:
        self.running.pop(dyno_id, None)
        cancel = self.cancels.pop(dyno_id, None)
        if cancel is not None:
            cancel.set()

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


def _http_when_due(ip: str, port: int, check: HealthCheck, due: float,
                   cancelled: threading.Event) -> str | None:
    """The check once `due` (unix time) has come; None when cancelled before."""
    if cancelled.wait(max(0.0, due - time.time())):
        return None
    return http_check(ip, port, check)


def memory_kill_line(dyno: DynoStatus) -> str:
    """R15, for new kills of the dyno's cgroup by its memory limit."""
    memory = int(dyno.metadata.get("memory_mb", 0)) or None
    return ("Error R15 (Memory quota vastly exceeded) -> a process was killed for using more "
            "than the dyno's memory" + (f" ({memory} MB)" if memory else ""))


