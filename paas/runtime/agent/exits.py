"""Wakes the agent when a dyno's monitor exits, that is when its container ended (a crash, an
exit of the app's own, a memory kill), so the crash is seen, logged and restarted at once
rather than at the next interval. A monitor writes the exit code, then exits; one thread waits
on a pidfd of each (Linux 5.3+, no polling). The reconcile pass hands it the running dynos'
monitors after each listing; only that thread touches the selector."""

from __future__ import annotations

import os
import selectors
import threading


class ExitWatch:
    def __init__(self, wake: threading.Event) -> None:
        self.wake = wake
        self._lock = threading.Lock()
        self._wanted: dict[str, int] | None = None  # the latest watch(), not yet taken
        self._watched: dict[str, tuple[int, int]] = {}  # dyno id -> (monitor pid, pidfd)
        self._ended: set[tuple[str, int]] = set()  # seen exit: not watched again
        self._poke_read, self._poke_write = os.pipe()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="dyno-exits", daemon=True)
        self._thread.start()

    def watch(self, monitors: dict[str, int]) -> None:
        """Watches these dynos' monitors (dyno id -> pid), and no others."""
        with self._lock:
            self._wanted = dict(monitors)
        os.write(self._poke_write, b"w")

    def watched(self) -> set[str]:
        with self._lock:
            return set(self._watched)

    def shutdown(self) -> None:
        self._stopped = True
        os.write(self._poke_write, b"s")
        self._thread.join(5)

    def _run(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self._poke_read, selectors.EVENT_READ)
            while not self._stopped:
                for key, _ in selector.select():
                    if key.fd == self._poke_read:
                        os.read(self._poke_read, 4096)
                        self._apply(selector)
                    else:
                        self._ended_one(selector, key.data)
            for _pid, fd in self._watched.values():
                os.close(fd)
        os.close(self._poke_read)
        os.close(self._poke_write)

    def _apply(self, selector: selectors.BaseSelector) -> None:
        with self._lock:
            wanted, self._wanted = self._wanted, None
        if wanted is None:
            return
        for dyno_id in [d for d, (pid, _) in self._watched.items() if wanted.get(d) != pid]:
            self._forget(selector, dyno_id)
        self._ended &= set(wanted.items())
        for dyno_id, pid in wanted.items():
            if dyno_id in self._watched or (dyno_id, pid) in self._ended:
                continue
            try:
                fd = os.pidfd_open(pid)
            except OSError:  # gone already: the pass it wakes, or the next, sees the exit
                self._ended.add((dyno_id, pid))
                self.wake.set()
                continue
            selector.register(fd, selectors.EVENT_READ, dyno_id)
            with self._lock:
                self._watched[dyno_id] = (pid, fd)

    def _ended_one(self, selector: selectors.BaseSelector, dyno_id: str) -> None:
        pid, _fd = self._watched[dyno_id]
        self._forget(selector, dyno_id)
        self._ended.add((dyno_id, pid))
        self.wake.set()

    def _forget(self, selector: selectors.BaseSelector, dyno_id: str) -> None:
        with self._lock:
            _pid, fd = self._watched.pop(dyno_id)
        selector.unregister(fd)
        os.close(fd)
