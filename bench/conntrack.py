"""The kernel's connection-tracking table under the router's load (root; wrk, nginx). The
platform's nftables table tracks every flow of the host; its own timeouts (TIME_WAIT 10 s
instead of the host's 120 s) go to dyno flows and to the router's ports. Figures, each a
bounded wrk run against the router-probe app:

- "router_keepalive": clients with keep-alive through the router (its upstream keep-alive to
  the dyno on, as always);
- "router_new_connections": every request a new client connection to the router
  (`Connection: close`), the upstream ones still kept alive;
- "direct_new_connections": every request a new host connection straight to the dyno, what
  the router would do without upstream keep-alive (a sync gunicorn behind it).

Each: requests/s, the table's peak entry count (sampled every 0.2 s) against its size, the
entries of dyno flows and of router flows at the end of the run, and the longest time left
on any TIME_WAIT entry of each kind (the timeout in force; with a new connection per request,
times requests/s: the entries that rate keeps). The peak counts the whole host's flows.
Prints ONE JSON line.

Usage: PAAS_TEST_SUBNET=10.x.0.0/16 .venv/bin/python bench/conntrack.py [seconds per run]
"""

from __future__ import annotations

import ipaddress
import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.platform import Platform, app_repo, git

APP = "ctbench"
NETFILTER = Path("/proc/sys/net/netfilter")


def wrk(url: str, seconds: int, close: bool = False) -> dict[str, object]:
    headers = ["-H", f"Host: {APP}.localhost"] + (["-H", "Connection: close"] if close else [])
    out = subprocess.run(["wrk", "-t2", "-c32", f"-d{seconds}s", *headers, url],
                         capture_output=True, text=True, check=True, timeout=seconds + 30).stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return {"rps": round(float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))),
            "non_2xx": int(errors.group(1)) if errors else 0,
            "socket_errors": socket_errors.group(1) if socket_errors else ""}


def dyno_peer(platform: Platform) -> str:
    token = (platform.home / "service-token").read_text().strip()
    routes = httpx.get(f"{platform.api_url}/v1/internal/routes",
                       headers={"Authorization": f"Bearer {token}"}).json()["routes"]
    return routes[f"{APP}.localhost"]["peers"][0]["addr"]


def count() -> int:
    return int((NETFILTER / "nf_conntrack_count").read_text())


class PeakSampler:
    def __init__(self) -> None:
        self.peak = count()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self.stop.wait(0.2):
            self.peak = max(self.peak, count())

    def __enter__(self) -> PeakSampler:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join()


def entries(subnet: str, router_port: int) -> dict[str, dict[str, int]]:
    """Entries of dyno flows (an address in the dyno subnet) and of flows to the router's
    port, each: how many, and the longest time left on a TIME_WAIT one."""
    network = ipaddress.ip_network(subnet)
    found = {kind: {"entries": 0, "time_wait_max_left_s": 0} for kind in ("dyno", "router")}
    for line in Path("/proc/net/nf_conntrack").read_text().splitlines():
        fields = line.split()
        if len(fields) < 6 or fields[2] != "tcp":
            continue
        pairs = original_tuple(fields)
        if ipaddress.ip_address(pairs.get("src", "0.0.0.0")) in network or \
                ipaddress.ip_address(pairs.get("dst", "0.0.0.0")) in network:
            kind = "dyno"
        elif pairs.get("dport") == str(router_port):
            kind = "router"
        else:
            continue
        found[kind]["entries"] += 1
        if fields[5] == "TIME_WAIT":
            left = int(fields[4])
            found[kind]["time_wait_max_left_s"] = max(found[kind]["time_wait_max_left_s"], left)
    return found


def original_tuple(fields: list[str]) -> dict[str, str]:
    """src, dst, sport, dport of the direction that opened the flow (the reply's follow)."""
    found: dict[str, str] = {}
    for field in fields:
        key, _, value = field.partition("=")
        if key in found:
            break
        if value:
            found[key] = value
    return found


def run(platform: Platform, url: str, seconds: int, close: bool) -> dict[str, object]:
    with PeakSampler() as sampler:
        figures = wrk(url, seconds, close)
        at_end = entries(platform.env["PAAS_DYNO_SUBNET"], platform.router_port)
    for kind in at_end.values() if close else ():  # a new connection per request: entries
        kind["steady_time_wait_entries"] = int(figures["rps"]) * kind["time_wait_max_left_s"]
    return {**figures, "peak_entries": sampler.peak, **at_end}


def main() -> None:
    seconds = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    platform = Platform.create()
    base = Path(tempfile.mkdtemp(prefix="paas-bench-conntrack-"))
    try:
        platform.up()
        platform.paas("apps:create", APP)
        git(app_repo(base, "router-probe"), "push", platform.remote_url(APP), "main")
        platform.wait_for(APP, "web.1")
        router_url = f"http://127.0.0.1:{platform.router_port}/"
        wrk(router_url, 2)  # warm-up
        figures = {
            "router_keepalive": run(platform, router_url, seconds, close=False),
            "router_new_connections": run(platform, router_url, seconds, close=True),
            "direct_new_connections": run(platform, f"http://{dyno_peer(platform)}/", seconds,
                                          close=True),
        }
        print(json.dumps({
            "bench": "conntrack", "seconds_per_run": seconds,
            "table_size": int((NETFILTER / "nf_conntrack_max").read_text()),
            "host_time_wait_s": int((NETFILTER / "nf_conntrack_tcp_timeout_time_wait")
                                    .read_text()),
            "entries_after": count(), **figures,
        }))
    finally:
        platform.down()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
