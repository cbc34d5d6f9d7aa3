"""Reports what a process can see of its machine, as JSON over HTTP (or on stdout with --print).

Run in a dyno it proves the isolation; run on the host it is the positive control.
`/connect?to=IP:PORT` tries a TCP connection; `--forkbomb` and `--hog` misbehave on purpose."""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


def status_fields() -> dict[str, str]:
    fields = {}
    with open("/proc/self/status") as f:
        for line in f:
            name, _, value = line.partition(":")
            if name in ("CapEff", "Seccomp", "NoNewPrivs"):
                fields[name] = value.strip()
    return fields


def default_route() -> bool:
    with open("/proc/net/route") as f:
        return any(line.split()[1] == "00000000" for line in list(f)[1:])


def processes() -> list[str]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    found.append(f.read().replace(b"\0", b" ").decode().strip())
            except OSError:
                pass
    return found


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
        "status": status_fields(),
        "usr_readonly": bool(os.statvfs("/usr/lib").f_flag & os.ST_RDONLY),
        "usr_nosuid": bool(os.statvfs("/usr/bin").f_flag & os.ST_NOSUID),
        "default_route": default_route(),
        "processes": processes(),
        "visible": {p: os.path.exists(p) for p in paths},
        "root_listable": root_entries is not None,
        "env": {k: os.environ.get(k) for k in ("PORT", "DYNO", "PS", "PAAS_RELEASE_VERSION")},
    }


def connect(target: str) -> str:
    host, _, port = target.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=2):
            return "connected"
    except OSError as error:
        return f"failed: {error}"


def fork_bomb() -> None:
    children = 0
    try:
        while True:
            if os.fork() == 0:
                time.sleep(30)
                os._exit(0)
            children += 1
    except OSError as error:
        print(f"fork failed after {children} children: {error}", flush=True)
    sys.exit(0)  # the children go with the dyno


def hog() -> None:
    hoard = []
    while True:
        hoard.append(bytearray(16 * 1024 * 1024))
        print(f"holding {len(hoard) * 16} MB", flush=True)


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        url = urlparse(self.path)
        if url.path == "/connect":
            body = json.dumps({"result": connect(parse_qs(url.query)["to"][0])}).encode()
        else:
            body = json.dumps(probe()).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        pass


if __name__ == "__main__":
    if "--print" in sys.argv:
        print(json.dumps(probe()))
    elif "--forkbomb" in sys.argv:
        fork_bomb()
    elif "--hog" in sys.argv:
        hog()
    else:
        ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler).serve_forever()
