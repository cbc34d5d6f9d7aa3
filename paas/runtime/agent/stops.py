"""Stopping dynos: SIGTERM, the app's grace, SIGKILL (R12), the last of their output, their
exit line, then their removal. Each stop runs on a pool of its own, so stops waiting out their
grace hold back nothing else (the health checks of the dynos replacing them: R10).

Once a stop has begun, the dyno is its stop's: the reconcile thread leaves it alone until it
is gone. The set of stops under way is the one table two threads share; its lock guards only
the set, never a runc call or a Redis write."""

from __future__ import annotations

import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from paas import safefs
from paas.runtime import DynoStatus, RunState, Runtime
from paas.runtime.agent.health import memory_kill_line
from paas.runtime.agent.keys import DynoKey
from paas.runtime.agent.logship import LogShipper

STOP_WORKERS = 8


@dataclass(frozen=True)
class StopOrder:
    dyno: DynoStatus  # as the reconcile pass saw it
    key: DynoKey
    grace: float  # seconds between SIGTERM and SIGKILL
    end_oneoff: bool  # a one-off whose end is not logged yet: log it and end its streams
    logged_oom_kills: int  # memory kills already said (R15)


class Stops:
    def __init__(self, runtime: Runtime, log: LogShipper,
                 wake: threading.Event | None = None) -> None:
        self.runtime = runtime
        self.log = log
        self.wake = wake or threading.Event()  # set when a stop ends: report the dyno gone
        self.pool = ThreadPoolExecutor(STOP_WORKERS, thread_name_prefix="stop")
        self._lock = threading.Lock()
        self._under_way: set[str] = set()

    def begin(self, order: StopOrder) -> None:
        with self._lock:
            self._under_way.add(order.dyno.id)
        if order.dyno.state == RunState.RUNNING and order.grace > 0:
            self.log.platform(order.key, "Stopping all processes with SIGTERM")
        self.pool.submit(self._stop, order)

    def under_way(self) -> set[str]:
        with self._lock:
            return set(self._under_way)

    def shutdown(self, cancel: bool = False) -> None:
        self.pool.shutdown(wait=True, cancel_futures=cancel)

    def _stop(self, order: StopOrder) -> None:
        try:
            self._stop_and_remove(order)
        except Exception as error:  # the next reconcile pass tries again
            print(f"agent: stopping {order.dyno.id}: {error}", file=sys.stderr, flush=True)
        finally:
            with self._lock:
                self._under_way.discard(order.dyno.id)
            self.wake.set()

    def _stop_and_remove(self, order: StopOrder) -> None:
        dyno, key, grace = order.dyno, order.key, order.grace
        running = dyno.state == RunState.RUNNING
        if running and self.runtime.stop_dyno(dyno.id, grace) and grace:
            self.log.platform(key, "Error R12 (Exit timeout) -> At least one process "
                              f"failed to exit within {grace:g} seconds of SIGTERM")
            self.log.platform(key, "Stopping remaining processes with SIGKILL")
        self.log.drain(dyno)
        code = exit_code_of(dyno.log_path)
        if order.end_oneoff:
            if self.runtime.oom_kills(dyno.id) > order.logged_oom_kills:
                self.log.platform(key, memory_kill_line(dyno))
            self.log.platform(key, f"Process exited with status {code}")
            self.log.end_oneoff(dyno, code)
        elif running:
            self.log.platform(key, f"Process exited with status {code}")
        self.runtime.remove_dyno(dyno.id)


def exit_code_of(log_path: Path) -> int | None:
    """What the dyno's monitor wrote beside its log, once the dyno exited."""
    try:
        return int(safefs.read_file(log_path.parent, "exit-code") or b"")
    except (OSError, ValueError, safefs.UnsafePath):
        return None
