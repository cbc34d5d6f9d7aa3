"""Dashboard pages with 50 apps: the time each page takes (p50/p95 over N requests, on
loopback, so it is the server's time) against the JSON API's app list in the same run (the
baseline: the same apps, no HTML). Prints ONE JSON line.

    PAAS_TEST_SUBNETS=218 .venv/bin/python -m bench.dashboard [--apps 50] [--requests 40]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import time

import httpx

from tests.platform import Platform


def timings(client: httpx.Client, path: str, count: int) -> dict[str, float]:
    spent = []
    for _ in range(count):
        start = time.perf_counter()
        response = client.get(path)
        spent.append((time.perf_counter() - start) * 1000)
        if response.status_code != 200:
            raise SystemExit(f"{path}: {response.status_code} {response.text[:300]}")
    spent.sort()
    return {"p50_ms": round(statistics.median(spent), 2),
            "p95_ms": round(spent[int(0.95 * (len(spent) - 1))], 2)}


def signed_in(platform: Platform) -> httpx.Client:
    client = httpx.Client(base_url=platform.api_url, timeout=30)
    page = client.get("/dashboard/login").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page)
    assert csrf is not None
    client.post("/dashboard/login", data={"csrf": csrf.group(1), "token": platform.token})
    return client


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--apps", type=int, default=50)
    parser.add_argument("--requests", type=int, default=40)
    args = parser.parse_args()
    platform = Platform.create()
    try:
        platform.up()
        with platform.api() as api:
            for i in range(args.apps):
                api.post("/v1/apps", json={"name": f"bench-{i:03d}"}).raise_for_status()
            api.patch("/v1/apps/bench-000/config",
                      json={f"VAR_{i}": "x" * 40 for i in range(30)}).raise_for_status()
            baseline = timings(api, "/v1/apps", args.requests)
        app = "/dashboard/apps/bench-000"
        pages = {"apps": "/dashboard/", "overview": app, "builds": f"{app}/builds",
                 "releases": f"{app}/releases", "config": f"{app}/config?reveal=1",
                 "logs": f"{app}/logs", "metrics": f"{app}/metrics"}
        client = signed_in(platform)
        try:
            figures = {name: timings(client, path, args.requests)
                       for name, path in pages.items()}
        finally:
            client.close()
        print(json.dumps({
            "apps": args.apps, "requests_per_page": args.requests,
            "baseline_api_apps_list": baseline, "pages": figures,
            "apps_page_vs_api_p50_ratio": round(figures["apps"]["p50_ms"]
                                                / baseline["p50_ms"], 2),
        }))
    finally:
        platform.down()


if __name__ == "__main__":
    main()
