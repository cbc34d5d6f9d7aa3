"""Router figures, printed as one JSON line (root; wrk, nginx):

- requests/s and p50/p99 latency with wrk, one run each, against the same web dyno of the
  router-probe app: (a) direct to the dyno on its bridge address, (b) through the router
  (nginx + Lua balancer + log shipping), (c) a hand-written minimal nginx proxy (upstream
  keepalive, no Lua, no logs); with the ratios b/a and b/c;
- seconds from `paas ps:scale web=2` to the first request served by web.2 through the router.

Load goes only to loopback and the platform's own dyno bridge, for a bounded time.

Usage: PAAS_TEST_SUBNETS=N .venv/bin/python bench/router.py [seconds per run]
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.platform import Platform, app_repo, free_port, git

APP = "rbench"
THREADS, CONNECTIONS = 2, 32

MINIMAL_NGINX = """\
worker_processes auto;
daemon on;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/tmp;
    proxy_temp_path {dir}/tmp;
    upstream dyno {{ server {peer}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://dyno;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
        }}
    }}
}}
"""


def wrk(url: str, host: str, seconds: int) -> dict[str, float]:
    out = subprocess.run(["wrk", f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{seconds}s",
                          "--latency", "-H", f"Host: {host}", url],
                         capture_output=True, text=True, check=True, timeout=seconds + 30).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return {"rps": round(rps), "p50_ms": _latency(out, "50%"), "p99_ms": _latency(out, "99%"),
            "non_2xx": int(errors.group(1)) if errors else 0,
            "socket_errors": socket_errors.group(1) if socket_errors else ""}


def _latency(out: str, label: str) -> float:
    value, unit = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()
    return round(float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit], 3)


def dyno_peer(platform: Platform) -> str:
    token = (platform.home / "service-token").read_text().strip()
    routes = httpx.get(f"{platform.api_url}/v1/internal/routes",
                       headers={"Authorization": f"Bearer {token}"}).json()["routes"]
    return routes[f"{APP}.localhost"]["peers"][0]["addr"]


def minimal_proxy(base: Path, peer: str) -> tuple[str, Path]:
    directory = base / "minimal-nginx"
    (directory / "tmp").mkdir(parents=True)
    port = free_port()
    conf = directory / "nginx.conf"
    conf.write_text(MINIMAL_NGINX.format(dir=directory, peer=peer, port=port))
    subprocess.run(["nginx", "-p", f"{directory}/", "-c", str(conf)], check=True)
    return f"http://127.0.0.1:{port}/", conf


def scale_to_first_request(platform: Platform) -> float:
    url = f"http://127.0.0.1:{platform.router_port}/"
    with httpx.Client(timeout=10, headers={"Host": f"{APP}.localhost"}) as client:
        start = time.monotonic()
        platform.paas("ps:scale", "web=2", "-a", APP)
        while time.monotonic() - start < 120:
            if client.get(url).json().get("dyno") == "web.2":
                return round(time.monotonic() - start, 3)
            time.sleep(0.01)
    raise RuntimeError("web.2 never served a request")


def main() -> None:
    seconds = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    platform = Platform.create()
    base = Path(tempfile.mkdtemp(prefix="paas-bench-router-"))
    conf = None
    try:
        platform.up()
        platform.paas("apps:create", APP)
        repo = app_repo(base, "router-probe")
        git(repo, "push", platform.remote_url(APP), "main")
        platform.wait_for(APP, "web.1")
        peer = dyno_peer(platform)
        minimal_url, conf = minimal_proxy(base, peer)
        host = f"{APP}.localhost"
        router_url = f"http://127.0.0.1:{platform.router_port}/"
        wrk(router_url, host, 2)  # warm-up: keepalive pools, the dyno's threads
        direct = wrk(f"http://{peer}/", host, seconds)
        routed = wrk(router_url, host, seconds)
        minimal = wrk(minimal_url, host, seconds)
        scale = scale_to_first_request(platform)
        print(json.dumps({
            "bench": "router", "seconds_per_run": seconds, "threads": THREADS,
            "connections": CONNECTIONS,
            "direct": direct, "router": routed, "minimal_nginx": minimal,
            "rps_ratio_router_vs_direct": round(routed["rps"] / direct["rps"], 3),
            "rps_ratio_router_vs_minimal_nginx": round(routed["rps"] / minimal["rps"], 3),
            "p99_ratio_router_vs_minimal_nginx": round(routed["p99_ms"] / minimal["p99_ms"], 3),
            "ps_scale_to_first_request_s": scale,
        }))
    finally:
        if conf is not None:
            subprocess.run(["nginx", "-p", f"{conf.parent}/", "-c", str(conf), "-s", "quit"],
                           check=False, stderr=subprocess.DEVNULL)
        platform.down()
        subprocess.run(["rm", "-rf", str(base)], check=False)


if __name__ == "__main__":
    main()
