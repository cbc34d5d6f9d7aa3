"""Reports what a process can see of its machine, as JSON over HTTP (or on stdout with --print).

Run in a dyno it proves the isolation; run on the host it is the positive control."""

from __future__ import annotations

import json
import os
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer


def probe() -> dict[str, object]:
    paths = [p for p in os.environ.get("PROBE_PATHS", "").split(":") if p]
    with open("/proc/1/cmdline", "rb") as f:
        pid1 = f.read().replace(b"\0", b" ").decode().strip()
    try:
        root_entries = os.listdir("/root")
    except OSError:
        root_entries = None
    return {
        "pid1": pid1,
        "pid": os.getpid(),
        "uid": os.getuid(),
        "visible": {p: os.path.exists(p) for p in paths},
        "root_listable": root_entries is not None,
        "env": {k: os.environ.get(k) for k in ("PORT", "DYNO", "PS", "PAAS_RELEASE_VERSION")},
    }


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps(probe()).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


if __name__ == "__main__":
    if "--print" in sys.argv:
        print(json.dumps(probe()))
    else:
        HTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler).serve_forever()
