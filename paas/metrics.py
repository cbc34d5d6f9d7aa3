"""Per-app router figures: request counts, status classes and service times, as rolling
per-minute aggregates in Redis (`metrics:<app>:<minute>`, a hash). The router writes them
from its access log; `paas apps:info` and the dashboard read them. Rebuildable: losing them
loses only history."""

from __future__ import annotations

import bisect
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import redis

KEEP_SECONDS = 25 * 3600
# Upper bounds (ms) of the service-time histogram's buckets; the last catches the rest.
BUCKETS = (1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 70, 100, 150, 200, 300, 500, 700, 1000, 1500,
           2000, 3000, 5000, 7000, 10000, 15000, 20000, 30000, 60000)
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")


def key(app: str, minute: int) -> str:
    return f"metrics:{app}:{minute}"


def bucket(service_ms: int) -> int:
    return bisect.bisect_left(BUCKETS, service_ms)


@dataclass
class Aggregator:
    """Counts requests in memory; `flush` adds them to Redis in one round trip."""

    counts: dict[tuple[str, int], Counter[str]] = field(default_factory=dict)

    def add(self, app: str, status: int, service_ms: int, error_code: str | None,
            at: float | None = None) -> None:
        minute = int((at if at is not None else time.time()) // 60)
        c = self.counts.setdefault((app, minute), Counter())
        c["requests"] += 1
        c[f"{status // 100}xx"] += 1
        c[f"b{bucket(service_ms)}"] += 1
        if error_code:
            c[f"code:{error_code}"] += 1

    def flush(self, client: redis.Redis) -> None:
        if not self.counts:
            return
        pipe = client.pipeline(transaction=False)
        for (app, minute), counter in self.counts.items():
            for name, n in counter.items():
                pipe.hincrby(key(app, minute), name, n)
            pipe.expire(key(app, minute), KEEP_SECONDS)
        pipe.execute()
        self.counts.clear()


def _percentile(histogram: Counter[int], total: int, fraction: float) -> int | None:
    if total == 0:
        return None
    rank = fraction * total
    seen = 0
    for index in sorted(histogram):
        seen += histogram[index]
        if seen >= rank:
            return BUCKETS[index] if index < len(BUCKETS) else BUCKETS[-1] * 2
    return None


def read(client: redis.Redis, app: str, minutes: int = 60, now: float | None = None
         ) -> dict[str, Any]:
    """The last `minutes` minutes: totals, status classes, p50/p95 service time (ms, the
    upper bound of the histogram bucket), and a per-minute series."""
    last = int((now if now is not None else time.time()) // 60)
    first = last - minutes + 1
    pipe = client.pipeline(transaction=False)
    for minute in range(first, last + 1):
        pipe.hgetall(key(app, minute))
    totals: Counter[str] = Counter()
    histogram: Counter[int] = Counter()
    series = []
    for minute, fields in zip(range(first, last + 1), pipe.execute(), strict=True):
        counts = {_text(k): int(v) for k, v in fields.items()}
        totals.update({k: v for k, v in counts.items() if not k.startswith("b")})
        in_minute = Counter({int(k[1:]): v for k, v in counts.items() if k.startswith("b")})
        histogram.update(in_minute)
        n = counts.get("requests", 0)
        series.append({"at": minute * 60, "requests": n, "5xx": counts.get("5xx", 0),
                       "p50_ms": _percentile(in_minute, n, 0.50),
                       "p95_ms": _percentile(in_minute, n, 0.95)})
    requests = totals.get("requests", 0)
    return {
        "minutes": minutes,
        "requests": requests,
        "status": {cls: totals.get(cls, 0) for cls in STATUS_CLASSES},
        "errors": {k[5:]: v for k, v in sorted(totals.items()) if k.startswith("code:")},
        "p50_ms": _percentile(histogram, requests, 0.50),
        "p95_ms": _percentile(histogram, requests, 0.95),
        "per_minute": series,
    }


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def summary(client: redis.Redis, app: str, minutes: int = 60) -> dict[str, Any]:
    """The figures without the per-minute series (for `paas apps:info`)."""
    try:
        figures = read(client, app, minutes)
    except redis.RedisError:
        return {"minutes": minutes, "available": False}
    figures.pop("per_minute")
    return figures
