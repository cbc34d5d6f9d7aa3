"""`scheduler.run`: a pass at once when woken, the interval only as the fallback."""

from __future__ import annotations

import threading

from paas import scheduler
from paas.wire import DesiredState, NodeInfo, NodeReport


class CountingScheduler:
    def __init__(self) -> None:
        self.passes = 0
        self.passed = threading.Event()

    def nodes(self) -> dict[str, NodeInfo]:
        return {"n": NodeInfo(memory_mb=1024)}

    def reconcile(self, node: str, desired: DesiredState) -> NodeReport:
        self.passes += 1
        self.passed.set()
        return NodeReport(dynos=())

    def reported(self, node: str, report: NodeReport) -> None:
        pass


class StillControlPlane:
    def register(self, node: str, info: NodeInfo) -> None:
        pass

    def desired(self, node: str) -> DesiredState:
        return DesiredState(dynos=(), apps={})

    def report(self, node: str, report: NodeReport) -> None:
        pass


def test_a_wake_makes_a_pass_at_once_and_stop_ends_the_loop() -> None:
    backend, stop, wake = CountingScheduler(), threading.Event(), threading.Event()
    loop = threading.Thread(target=scheduler.run, args=(backend, StillControlPlane(), stop, 600),
                            kwargs={"wake": wake})
    loop.start()
    try:
        assert backend.passed.wait(10)
        backend.passed.clear()
        wake.set()
        assert backend.passed.wait(10)  # long before the 600 s interval
        assert backend.passes == 2
    finally:
        stop.set()
        wake.set()
        loop.join(10)
    assert not loop.is_alive()
