"""What a build's egress proxy costs: the same client, downloading a large file and making many
small requests, once straight from the host (the baseline) and once from inside a build's
network namespace through its egress proxy (paas/runtime/buildnet.py). The server is local (a
loopback address opened to the proxy the way PAAS_EGRESS_ALLOW opens a mirror), so the figures
are the proxy's own overhead, not a registry's. Prints ONE JSON line.

    .venv/bin/python -m bench.egress [--megabytes 256 --requests 300 --rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from paas.runtime.buildnet import build_network
from paas.settings import Settings

SERVED_ON = "127.0.0.2"
# Run by the same interpreter in both places; urllib honours http_proxy.
CLIENT = """
import json, sys, time, urllib.request
base, requests = sys.argv[1], int(sys.argv[2])
started = time.monotonic()
with urllib.request.urlopen(base + "/big", timeout=60) as response:
    size = 0
    while chunk := response.read(1 << 20):
        size += len(chunk)
seconds = time.monotonic() - started
started = time.monotonic()
for _ in range(requests):
    with urllib.request.urlopen(base + "/small", timeout=10) as response:
        response.read()
print(json.dumps({"mb_per_s": size / seconds / 1e6,
                  "ms_per_request": (time.monotonic() - started) * 1000 / requests}))
"""


class Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def measure(command: list[str], env: dict[str, str], base: str, requests: int) -> dict:
    done = subprocess.run([*command, sys.executable, "-c", CLIENT, base, str(requests)],
                          env=env, capture_output=True, text=True, check=True, timeout=600)
    return json.loads(done.stdout)


def best(runs: list[dict]) -> dict:
    return {"mb_per_s": max(run["mb_per_s"] for run in runs),
            "ms_per_request": min(run["ms_per_request"] for run in runs)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--megabytes", type=int, default=256)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="egress-bench-") as root:
        files = Path(root) / "files"
        files.mkdir()
        with open(files / "big", "wb") as big:
            big.truncate(args.megabytes << 20)
        (files / "small").write_bytes(b"x" * 512)
        server = ThreadingHTTPServer((SERVED_ON, 0), partial(Quiet, directory=str(files)))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        base = f"http://{SERVED_ON}:{server.server_port}"
        settings = Settings(home=Path(root) / "home", egress_allow=SERVED_ON)
        plain = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        runs: dict[str, list[dict]] = {"direct": [], "proxied": []}
        try:
            with build_network(settings, settings.install_id, lambda _line: None) as net:
                for _ in range(args.rounds):  # alternating, so neither gains from going second
                    runs["direct"].append(measure([], plain, base, args.requests))
                    runs["proxied"].append(measure(["nsenter", f"--net={net.netns_path}"],
                                                   {**plain, **net.env}, base, args.requests))
        finally:
            server.shutdown()
            server.server_close()
    direct, proxied = (best(runs[kind]) for kind in ("direct", "proxied"))
    print(json.dumps({
        "rounds": args.rounds,
        "download_mb": args.megabytes,
        "direct_mb_per_s": round(direct["mb_per_s"], 1),
        "proxied_mb_per_s": round(proxied["mb_per_s"], 1),
        "throughput_ratio_proxied_to_direct": round(proxied["mb_per_s"] / direct["mb_per_s"], 2),
        "small_requests": args.requests,
        "direct_ms_per_request": round(direct["ms_per_request"], 2),
        "proxied_ms_per_request": round(proxied["ms_per_request"], 2),
        "latency_ratio_proxied_to_direct": round(
            proxied["ms_per_request"] / direct["ms_per_request"], 2),
    }))


if __name__ == "__main__":
    main()
