"""A soak: a request loop through the router while one app is deployed and reconfigured over and
over. Figures: requests sent and failed, p99 latency during the churn against p99 of the same
loop on the same app with nothing changing (the baseline, measured in the same run), the
deploys and config changes made, and the platform's memory (its processes and nginx) before
and after. Prints ONE JSON line.

    PAAS_TEST_SUBNET=10.223.0.0/16 .venv/bin/python -m bench.soak [--deploys 10 --changes 10]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import uuid
from pathlib import Path

from bench.load import platform_rss_kb
from tests.platform import Platform
from tests.soak import Visitors, soak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--deploys", type=int, default=10)
    parser.add_argument("--changes", type=int, default=10)
    parser.add_argument("--baseline-seconds", type=float, default=10)
    args = parser.parse_args()
    platform = Platform.create()
    try:
        platform.up()
        memory_before = platform_rss_kb(platform)
        app = f"soak-{uuid.uuid4().hex[:6]}"
        started = time.monotonic()
        churn = soak(platform, Path(tempfile.mkdtemp(prefix="soak-")), app, args.deploys,
                     args.changes)
        churn_seconds = time.monotonic() - started
        with Visitors(platform, app) as quiet:
            time.sleep(args.baseline_seconds)
        memory_after = platform_rss_kb(platform)
    finally:
        platform.down()
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
        "platform_memory_kb_before": memory_before,
        "platform_memory_kb_after": memory_after,
    }))


if __name__ == "__main__":
    main()
