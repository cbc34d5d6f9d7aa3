"""Tries to escape, and reports each attempt as JSON: over HTTP in a dyno, on stdout with
--print (a build, or the host as the positive control).

ESCAPE_TARGETS (JSON), or the query's `targets`, names what to try: {"read": [paths], "unix":
[sockets], "http": [urls], "tcp": ["ip:port"], "tcp_from": ["sport>ip:port"], "udp_from":
["sport>ip:port"], "setuid": [binaries]}. `*_from` bind the source port first (0: any);
UDP is "ok" when the datagram is answered. Privilege attempts (mount, unshare, ptrace) always
run. Every result is "ok" or the error that stopped it."""

from __future__ import annotations

import ctypes
import json
import os
import socket
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

LIBC = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNS, CLONE_NEWUSER, PTRACE_ATTACH, PTRACE_DETACH = 0x20000, 0x10000000, 16, 17


def attempt(action: Callable[[], object]) -> str:
    try:
        action()
        return "ok"
    except Exception as error:  # the probe reports everything
        return f"failed: {type(error).__name__}: {error}"[:200]


def read(path: str) -> None:
    if os.path.isdir(path):
        os.listdir(path)
    else:
        with open(path, "rb") as f:
            f.read(1)


def unix(path: str) -> None:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(2)
        s.connect(path)


def http(url: str) -> None:
    """ok only for a 2xx: a refusal (401, 403) is an error like any other."""
    with urllib.request.urlopen(url, timeout=3) as response:
        response.read(1)


def tcp(target: str) -> None:
    """host:port; the host "gateway" is the first address of this dyno's own network, the
    host's end of its bridge."""
    host, _, port = target.rpartition(":")
    with socket.create_connection((own_gateway() if host == "gateway" else host, int(port)),
                                  timeout=2):
        pass


def bound(kind: int, source_port: int) -> socket.socket:
    """A socket on `source_port`, even the one this probe's own server listens on."""
    sock = socket.socket(socket.AF_INET, kind)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.settimeout(2)
    try:
        sock.bind(("0.0.0.0", source_port))
    except OSError:
        sock.close()
        raise
    return sock


def address(target: str) -> tuple[str, int]:
    host, _, port = target.rpartition(":")
    return own_gateway() if host == "gateway" else host, int(port)


def tcp_from(attempt: str) -> None:
    """sport>host:port"""
    source, _, target = attempt.partition(">")
    with bound(socket.SOCK_STREAM, int(source)) as sock:
        sock.connect(address(target))


def udp_from(attempt: str) -> None:
    source, _, target = attempt.partition(">")
    with bound(socket.SOCK_DGRAM, int(source)) as sock:
        sock.connect(address(target))  # else a socket sharing the port may get the answer
        sock.send(b"escape-probe")
        sock.recv(100)


def own_gateway() -> str:
    with open("/proc/net/route") as routes:
        for line in routes.readlines()[1:]:
            fields = line.split()
            if fields[0] == "eth0" and fields[2] == "00000000":  # the on-link network
                network = int(fields[1], 16)  # in host byte order: little-endian here
                return socket.inet_ntoa((network + (1 << 24)).to_bytes(4, "little"))
    raise OSError("no network of its own (no eth0 route)")


def check(code: int) -> None:
    if code != 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))


def at_once(action: Callable[[str], object], items: list[str]) -> dict[str, str]:
    """Many attempts that may each wait for their timeout: side by side."""
    with ThreadPoolExecutor(max_workers=16) as pool:
        results = pool.map(lambda item: attempt(lambda: action(item)), items)
        return dict(zip(items, results, strict=True))


def in_child(action: Callable[[], object]) -> str:
    """Runs a namespace change in a child, so the probe itself stays as it was."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(write_end, attempt(action).encode())
        os._exit(0)
    os.close(write_end)
    result = os.read(read_end, 1000).decode()
    os.waitpid(pid, 0)
    return result


def mount() -> None:
    target = tempfile.mkdtemp()
    try:
        check(LIBC.mount(b"none", target.encode(), b"tmpfs", 0, None))
        LIBC.umount2(target.encode(), 0)
    finally:
        os.rmdir(target)


def ptrace() -> None:
    pid = os.fork()
    if pid == 0:
        os.execv("/bin/sleep", ["sleep", "10"])
    try:
        check(LIBC.ptrace(PTRACE_ATTACH, pid, None, None))
        LIBC.ptrace(PTRACE_DETACH, pid, None, None)
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)


def setuid(path: str) -> str:
    """The `id` output of a setuid-root copy of /usr/bin/id: euid=0 means it worked."""
    try:
        return subprocess.run([path], capture_output=True, text=True, timeout=5).stdout.strip()
    except OSError as error:
        return f"failed: {error}"


def processes() -> list[str]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    found.append(f.read().replace(b"\0", b" ").decode(errors="replace").strip())
            except OSError:
                pass
    return found


def probe(targets_json: str | None = None) -> dict[str, object]:
    targets = json.loads(targets_json or os.environ.get("ESCAPE_TARGETS") or "{}")
    return {
        "uid": os.getuid(),
        "processes": processes(),
        "read": {p: attempt(lambda p=p: read(p)) for p in targets.get("read", [])},
        "unix": {p: attempt(lambda p=p: unix(p)) for p in targets.get("unix", [])},
        "http": {u: attempt(lambda u=u: http(u)) for u in targets.get("http", [])},
        "tcp": {t: attempt(lambda t=t: tcp(t)) for t in targets.get("tcp", [])},
        "tcp_from": at_once(tcp_from, targets.get("tcp_from", [])),
        "udp_from": at_once(udp_from, targets.get("udp_from", [])),
        "setuid": {p: setuid(p) for p in targets.get("setuid", [])},
        "mount": in_child(mount),
        "unshare_user": in_child(lambda: check(LIBC.unshare(CLONE_NEWUSER))),
        "unshare_mount": in_child(lambda: check(LIBC.unshare(CLONE_NEWNS))),
        "ptrace": attempt(ptrace),
    }


class Server(ThreadingHTTPServer):
    allow_reuse_port = True  # tcp_from binds $PORT too, as any process of the dyno may


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        query = parse_qs(urlparse(self.path).query)
        body = json.dumps(probe(query.get("targets", [None])[0])).encode()
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
    else:
        Server(("0.0.0.0", int(os.environ["PORT"])), Handler).serve_forever()
