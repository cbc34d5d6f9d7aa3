"""A build's lease in Redis: the worker holding it is building, and refreshes it (the
heartbeat) while it works. A lease that expired means that worker is gone: the API's reaper
(`paas/reaper.py`) then fails the build, and a redelivered task may take the build over."""

from __future__ import annotations

import contextlib
import threading
import time
from types import TracebackType

import redis
from redis.lock import Lock

# A lease lives this many heartbeat intervals without a refresh.
TTL_BEATS = 3


def lease_key(build_id: str) -> str:
    return f"paas:build-lease:{build_id}"


def ttl(interval: float) -> float:
    return interval * TTL_BEATS


def make_lock(client: redis.Redis, name: str, interval: float) -> Lock:
    # thread_local=False: the heartbeat thread refreshes what the task thread acquired.
    return client.lock(name, timeout=ttl(interval), thread_local=False)


def acquire(lock: Lock, wait: float, poll: float = 0.1) -> bool:
    """Takes `lock`, waiting up to `wait` seconds for its holder to release it or to die."""
    deadline = time.monotonic() + wait
    while True:
        try:
            if lock.acquire(blocking=False):
                return True
        except redis.RedisError:
            pass  # Redis restarting: try again until the deadline
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll)


def refresh(lock: Lock) -> None:
    """One heartbeat: extends the lock's TTL; takes it again if Redis lost it (a restart
    without persistence); leaves it if another holder took it over."""
    try:
        lock.reacquire()
    except redis.exceptions.LockNotOwnedError:
        lock.local.token = None
        lock.acquire(blocking=False)


class Heartbeat:
    """Refreshes `locks` every `interval` seconds in a thread, while the `with` block runs;
    releases them at the end."""

    def __init__(self, locks: list[Lock], interval: float) -> None:
        self.locks = locks
        self.interval = interval
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True, name="build-heartbeat")

    def __enter__(self) -> Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stopped.set()
        self.thread.join(timeout=self.interval + 5)
        for lock in self.locks:
            release(lock)

    def keep(self, lock: Lock) -> None:
        """Refreshes `lock` (already taken) too, until the end of the block."""
        self.locks.append(lock)

    def _beat(self) -> None:
        while not self.stopped.wait(self.interval):
            for lock in list(self.locks):
                if lock.local.token is None:
                    continue  # released, or lost to another holder
                with contextlib.suppress(redis.RedisError):  # down: the next beat tries again
                    refresh(lock)


def release(lock: Lock) -> None:
    try:
        if lock.owned():
            lock.release()
    except redis.RedisError:
        pass  # expired or Redis is down: the TTL frees it
