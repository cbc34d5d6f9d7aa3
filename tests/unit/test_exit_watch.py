"""The agent's exit watch: a watched process that exits wakes the agent; one that runs on, or
one no longer watched, does not."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from paas.runtime.agent.exits import ExitWatch

WAIT = 10.0  # generous: the watch wakes at once, this only bounds a broken test


@pytest.fixture
def watch() -> Iterator[tuple[ExitWatch, threading.Event]]:
    wake = threading.Event()
    exits = ExitWatch(wake)
    yield exits, wake
    exits.shutdown()


def sleeper() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def watching(exits: ExitWatch, ids: set[str]) -> None:
    for _ in range(1000):
        if exits.watched() == ids:
            return
        threading.Event().wait(0.01)
    raise AssertionError(f"watching {exits.watched()}, not {ids}")


def test_an_exit_wakes_and_a_running_process_does_not(watch) -> None:  # type: ignore[no-untyped-def]
    exits, wake = watch
    crashing, running = sleeper(), sleeper()
    try:
        exits.watch({"web-1": crashing.pid, "web-2": running.pid})
        watching(exits, {"web-1", "web-2"})
        assert not wake.wait(0.3)  # positive control: nothing ended, nothing woke
        crashing.kill()
        crashing.wait()
        assert wake.wait(WAIT)
        watching(exits, {"web-2"})
        wake.clear()
        exits.watch({"web-1": crashing.pid, "web-2": running.pid})  # the pass before cleanup
        assert not wake.wait(0.3)  # an exit seen once does not wake again
    finally:
        for proc in (crashing, running):
            proc.kill()
            proc.wait()


def test_a_dyno_no_longer_watched_does_not_wake(watch) -> None:  # type: ignore[no-untyped-def]
    exits, wake = watch
    stopped = sleeper()
    try:
        exits.watch({"web-1": stopped.pid})
        watching(exits, {"web-1"})
        exits.watch({})  # its stop began: the stop's end wakes the agent, not this
        watching(exits, set())
        stopped.kill()
        stopped.wait()
        assert not wake.wait(0.3)
    finally:
        stopped.kill()
        stopped.wait()


def test_a_monitor_gone_before_it_is_watched_wakes(watch) -> None:  # type: ignore[no-untyped-def]
    exits, wake = watch
    gone = sleeper()
    gone.kill()
    gone.wait()
    exits.watch({"web-1": gone.pid})
    assert wake.wait(WAIT)
