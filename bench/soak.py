"""A soak: a request loop through the router while one app is deployed and reconfigured over and
over. Figures: requests sent and failed, p99 latency during the churn against p99 of the same
loop on the same app with nothing changing (the baseline, measured in the same run), the
deploys and config changes made, and the platform's memory (its processes and nginx, RSS):
in total and per process kind, once its services have all started ("started"), once the first
deploy is served ("warm": the Celery child that built it has imported the build code) and
after the churn. Prints ONE JSON line; a failed request's line and the router's and platform's
log lines of the moment are in it.

    PAAS_TEST_SUBNETS=223 .venv/bin/python -m bench.soak [--deploys 10 --changes 10]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

from bench.load import _cmd, _ppid, _rss_kb, platform_pids
from tests.platform import Platform
from tests.soak import Visitors, soak

KINDS = (("redis-server", "redis"), ("paas.api", "api"), ("paas.roles", "node"),
         ("paas.runtime.agent", "agent"), ("-m router", "router"), ("nginx", "nginx"),
         ("paas up", "up"), ("paas.supervisor", "up"))
# `node` hosts the agent, the router and the build worker (paas/roles.py).
SERVICES = {"redis", "api", "node", "nginx"}


def memory_by_kind(platform: Platform) -> dict[str, int]:
    """RSS in kB per kind of process; the Celery main process apart from its pool children."""
    assert platform.process is not None
    by_kind: Counter[str] = Counter()
    for pid in platform_pids(platform):
        command = _cmd(pid)
        if "celery" in command and "paas.roles" not in command:
            kind = "worker" if _ppid(pid) == platform.process.pid else "worker_children"
        else:
            kind = next((name for word, name in KINDS if word in command), "other")
        by_kind[kind] += _rss_kb(pid)
    return dict(sorted(by_kind.items()))


def settled_memory(platform: Platform, timeout: float = 60) -> dict[str, int]:
    """Once every service runs and the total has stopped moving (services import their code
    after the API says it is up)."""
    deadline = time.monotonic() + timeout
    last = 0
    while True:
        memory = memory_by_kind(platform)
        total = sum(memory.values())
        if (memory.keys() >= SERVICES and abs(total - last) < 1024) or time.monotonic() > deadline:
            return memory
        last = total
        time.sleep(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--deploys", type=int, default=10)
    parser.add_argument("--changes", type=int, default=10)
    parser.add_argument("--baseline-seconds", type=float, default=10)
    args = parser.parse_args()
    platform = Platform.create()
    memory: dict[str, dict[str, int]] = {}
    try:
        platform.up()
        memory["started"] = settled_memory(platform)
        app = f"soak-{uuid.uuid4().hex[:6]}"
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
            churn = soak(platform, Path(tmp), app, args.deploys, args.changes,
                         on_ready=lambda: memory.update(warm=settled_memory(platform)))
        churn_seconds = time.monotonic() - started
        with Visitors(platform, app) as quiet:
            time.sleep(args.baseline_seconds)
        memory["after"] = settled_memory(platform)
    finally:
        platform.down()
    total = {stage: sum(kinds.values()) for stage, kinds in memory.items()}
    print(json.dumps({
        "requests_sent": churn["requests"],
        "requests_failed": churn["failed"],
        "p99_ms": churn["p99_ms"],
        "baseline_p99_ms": quiet.p99_ms(),
        "p99_ratio_to_baseline": round(float(churn["p99_ms"])  # type: ignore[arg-type]
                                       / max(quiet.p99_ms(), 0.1), 2),
        "baseline_requests_failed": len(quiet.failures),
        "deploys": churn["deploys"],
        "config_changes": churn["config_changes"],
        "churn_seconds": round(churn_seconds, 1),
        "platform_memory_kb_started": total["started"],
        "platform_memory_kb_warm": total["warm"],
        "platform_memory_kb_after": total["after"],
        "memory_after_ratio_to_warm": round(total["after"] / max(total["warm"], 1), 3),
        "memory_kb_by_process": memory,
        "failures": churn["failures"],
        "evidence": churn["evidence"] + churn["platform_log"],  # type: ignore[operator]
        "timeline": churn["timeline"],
    }))


if __name__ == "__main__":
    main()
