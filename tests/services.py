"""The processes of a test platform's services, found from its `paas up` pid, and their memory
(read from /proc, as the kernel counts it)."""

from __future__ import annotations

import threading
from pathlib import Path

from tests.platform import Platform

# What each service's command line holds (Procfile; `node` hosts the agent, the router and the
# worker, paas/roles.py, unless PAAS_ROLES_APART runs some of them alone).
MARKERS = {"redis": "redis-server", "api": "paas.api", "node": "paas.roles",
           "worker": "paas.builder.celery_worker", "agent": "paas.runtime.agent",
           "router": "-m router"}


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def descendants(pid: int) -> list[int]:
    found = [pid]
    for child in children(pid):
        found += descendants(child)
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def service_pids(platform: Platform) -> dict[str, int]:
    """The main process of each service, by name."""
    assert platform.process is not None
    pids: dict[str, int] = {}
    for pid in children(platform.process.pid):
        line = _cmdline(pid)
        for name, marker in MARKERS.items():
            if marker in line and name not in pids:
                pids[name] = pid
                break
    return pids


def status_kb(pid: int, field: str) -> int:
    """A `VmRSS`/`VmHWM` figure of /proc/<pid>/status, in kB (0 once the process is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_rss_mb(pid: int) -> float:
    """The resident memory of a process and all its descendants."""
    return sum(status_kb(p, "VmRSS") for p in descendants(pid)) / 1024


def hwm_mb(pid: int) -> float:
    """The highest resident memory of a process and of each of its live descendants, summed."""
    return sum(status_kb(p, "VmHWM") for p in descendants(pid)) / 1024


class PeakSampler:
    """Samples the resident memory of each service's process tree until stopped; `peaks`
    holds the highest sum seen per service."""

    def __init__(self, pids: dict[str, int], interval: float = 0.05) -> None:
        self.pids = pids
        self.interval = interval
        self.peaks = dict.fromkeys(pids, 0.0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            for name, pid in self.pids.items():
                self.peaks[name] = max(self.peaks[name], tree_rss_mb(pid))


class Growth:
    """How much some services' memory grows over a `with` block: the larger of their
    high-water marks (VmHWM, each live process of the service) and the sampled peak of each
    process tree (git helpers included), less the high-water mark before."""

    def __init__(self, platform: Platform, names: tuple[str, ...] = ("api", "node")) -> None:
        pids = service_pids(platform)
        self.pids = {name: pids[name] for name in names}
        self.before = {name: hwm_mb(pid) for name, pid in self.pids.items()}
        self.sampler = PeakSampler(self.pids)

    def __enter__(self) -> Growth:
        self.sampler.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.sampler.__exit__()

    def grown_mb(self) -> dict[str, float]:
        return {name: max(hwm_mb(pid), self.sampler.peaks[name]) - self.before[name]
                for name, pid in self.pids.items()}
