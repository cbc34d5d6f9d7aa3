"""A dyno's CPU use: the growth of its cgroup's CPU time (ns; paas/cgroups.py) between two
samples, as a percentage of one core over that wall time (200% is two cores busy)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

FORGET_AFTER = 300.0  # seconds: samples of dynos not seen for this long are dropped


@dataclass
class CpuMeter:
    samples: dict[str, tuple[float, int]] = field(default_factory=dict)

    def percent(self, dyno_id: str, usage_ns: int, now: float | None = None) -> float | None:
        """CPU use since the previous sample of this dyno; None for the first one."""
        at = time.monotonic() if now is None else now
        previous = self.samples.get(dyno_id)
        self.samples[dyno_id] = (at, usage_ns)
        self._forget(at)
        if previous is None or at <= previous[0] or usage_ns < previous[1]:
            return None
        return round((usage_ns - previous[1]) / 1e9 / (at - previous[0]) * 100, 1)

    def _forget(self, now: float) -> None:
        stale = [k for k, (at, _) in self.samples.items() if now - at > FORGET_AFTER]
        for dyno_id in stale:
            del self.samples[dyno_id]
