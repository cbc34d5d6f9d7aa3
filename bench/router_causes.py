"""The router's throughput, cause by cause, printed as one JSON line (root; wrk, nginx): copies
of a running paas router's nginx (its rendered config and Lua, its route table) with one
thing changed each, beside the router itself and, given `--peer`, another platform's router
(piku's nginx), all in one invocation, runs alternating round by round so every ratio is
measured in the same window.

Variants of the running router's config (each changes one thing):
- `copy`: the config as rendered (its own ports: the copy's figure against `router` shows
  that a copy measures what the router does);
- `no_log`: no `log_by_lua` (the Heroku router line, batched to the router process);
- `no_lua`: no Lua at all: `proxy_pass` to the route's first peer, no log line;
- `no_headers`: without X-Request-Id, X-Request-Start, Via (the headers piku does not send);
- `buffering`: `proxy_buffering on` (responses are streamed by the router; nginx's default
  buffers);
- `workers_1`: `worker_processes 1`; `workers_2_affinity`: 2 workers with `worker_cpu_affinity
  auto`;

Usage: flock /tmp/heavy.lock .venv/bin/python bench/router_causes.py --router-dir
  $PAAS_HOME/router --host APP.localhost [--peer http://127.0.0.1:PORT/ --peer-host H]
  [--variants copy,no_log,...] [--rounds 3] [--seconds 10]
Ports come from PAAS_TEST_PORTS (tests/platform.py's free_port). The copies are stopped at
the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.throughput import wrk
from tests.platform import free_port

CLK_TCK = os.sysconf("SC_CLK_TCK")

Edit = Callable[[str, str], str]  # (config, first peer "ip:port") -> config


def _sub(pattern: str, repl: str, count: int = 0) -> Edit:
    def edit(conf: str, peer: str) -> str:
        new, n = re.subn(pattern, repl, conf, count=count, flags=re.M | re.S)
        if n == 0:
            raise SystemExit(f"variant edit found nothing: {pattern!r}")
        return new
    return edit


def _chain(*edits: Edit) -> Edit:
    def edit(conf: str, peer: str) -> str:
        for e in edits:
            conf = e(conf, peer)
        return conf
    return edit


def _no_lua(conf: str, peer: str) -> str:
    conf = _sub(r"server 0\.0\.0\.1;\s*balancer_by_lua_block \{[^}]*\}", f"server {peer};")(
        conf, peer)
    conf = _sub(r"(location / \{)\s*access_by_lua_block \{[^}]*\}", r"\1")(conf, peer)
    return _NO_LOG(conf, peer)


_NO_LOG = _sub(r"(location / \{.*?)log_by_lua_block \{[^}]*\}", r"\1", count=1)

VARIANTS: dict[str, Edit] = {
    "copy": lambda conf, peer: conf,
    "no_log": _NO_LOG,
    "no_lua": _no_lua,
    "no_headers": _chain(*(_sub(rf"^\s*proxy_set_header {h} .*?;\n", "")
                           for h in ("X-Request-Id", "X-Request-Start", "Via"))),
    "buffering": _sub(r"proxy_buffering off;", "proxy_buffering on;"),
    "workers_1": _sub(r"^worker_processes \S+;", "worker_processes 1;"),
    "workers_2_affinity": _sub(r"^worker_processes \S+;",
                               "worker_processes 2;\nworker_cpu_affinity auto;"),
}


def tree(conf: str, peer: str) -> str:
    """This checkout's router (template and Lua) for the running router's settings: a change
    measured before it is deployed."""
    from paas.settings import Settings
    from router.nginx import PACKAGE_DIR, Router
    rendered = Router(Settings()).render()
    return re.sub(r'lua_package_path "[^"]*";',
                  f'lua_package_path "{PACKAGE_DIR / "lua"}/?.lua;;";', rendered)


VARIANTS["tree"] = tree
VARIANTS["tree_workers_1"] = lambda conf, peer: VARIANTS["workers_1"](tree(conf, peer), peer)


def _own_ports(conf: str, directory: Path, port: int, control: int) -> str:
    """The copy listens on ports of its own, keeps its pid and logs in `directory`; it ships
    its log lines to the router's socket as the router's nginx does."""
    conf = re.sub(r"^pid .*;$", f"pid {directory}/nginx.pid;", conf, flags=re.M)
    conf = re.sub(r"^error_log (\S+)", f"error_log {directory}/error.log", conf, flags=re.M)
    conf = re.sub(r"listen \d+ default_server;", f"listen {port} default_server;", conf)
    conf = re.sub(r"listen 127\.0\.0\.1:\d+;", f"listen 127.0.0.1:{control};", conf)
    # TLS servers (certificates) are left out of the copies: plain HTTP is what is measured.
    return re.sub(r"listen \d+ ssl", f"listen {free_port()} ssl", conf)


@contextlib.contextmanager
def nginx_copy(router_dir: Path, base: Path, name: str, conf: str,
               routes: str) -> Iterator[str]:
    directory = base / name
    shutil.copytree(router_dir / "tmp", directory / "tmp", dirs_exist_ok=True)
    port, control = free_port(), free_port()
    path = directory / "nginx.conf"
    path.write_text(_own_ports(conf, directory, port, control))
    (directory / "tmp").chmod(0o755)
    subprocess.run(["nginx", "-c", str(path)], check=True)
    try:
        secret = (router_dir / "control-secret").read_text().strip()
        deadline = time.monotonic() + 10
        while True:
            try:
                r = httpx.put(f"http://127.0.0.1:{control}/routes", content=routes,
                              headers={"X-Paas-Control": secret}, timeout=2)
                if r.status_code == 204:
                    break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/"
    finally:
        subprocess.run(["nginx", "-c", str(path), "-s", "quit"], check=False)
        for _ in range(100):
            if not (directory / "nginx.pid").exists():
                break
            time.sleep(0.1)


def tree_cpu(root: int) -> float:
    """CPU seconds (user + system) of `root` and its live descendants."""
    children: dict[int, list[int]] = {}
    times: dict[int, float] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        children.setdefault(int(fields[1]), []).append(int(d.name))
        times[int(d.name)] = (int(fields[11]) + int(fields[12])) / CLK_TCK
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += times.get(pid, 0.0)
        todo.extend(children.get(pid, []))
    return total


def master_pid(pid_file: Path) -> int:
    return int(pid_file.read_text().split()[0])


def measured(url: str, host: str, seconds: int, cpu: dict[str, int]) -> dict:
    """One wrk run, with the CPU each named process tree spent per request (µs)."""
    before = {name: tree_cpu(pid) for name, pid in cpu.items()}
    r = wrk(url, seconds, host)
    requests = max(r["rps"] * seconds, 1)
    r["cpu_us_per_request"] = {name: round((tree_cpu(pid) - before[name]) * 1e6 / requests, 1)
                               for name, pid in cpu.items()}
    return r


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--router-dir", type=Path, required=True)
    ap.add_argument("--host", required=True, help="the app's hostname on the router")
    ap.add_argument("--router-port", type=int, help="the running router's port (a row)")
    ap.add_argument("--peer", help="another router's URL (a row), e.g. piku's nginx")
    ap.add_argument("--peer-host", help="Host header for --peer")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--pause", type=float, default=2.0)
    ap.add_argument("--paas-cpu", action="append", default=[], metavar="NAME=PID",
                    help="a process tree whose CPU counts for every paas row (the app's "
                    "monitor, the router process, redis)")
    ap.add_argument("--peer-nginx-pid", type=int)
    ap.add_argument("--peer-app-pid", type=int)
    args = ap.parse_args()
    secret = (args.router_dir / "control-secret").read_text().strip()
    conf = (args.router_dir / "nginx.conf").read_text()
    control = re.search(r"listen 127\.0\.0\.1:(\d+);", conf)
    assert control
    routes = httpx.get(f"http://127.0.0.1:{control.group(1)}/routes",
                       headers={"X-Paas-Control": secret}).text
    line = next(ln for ln in routes.splitlines() if ln.split()[0] == args.host)
    peer = line.split()[3].split("/")[0]
    targets: dict[str, tuple[str, str]] = {}
    cpus: dict[str, dict[str, int]] = {}
    paas_cpu = {k: int(v) for k, v in (item.split("=") for item in args.paas_cpu)}
    if args.router_port:
        targets["router"] = (f"http://127.0.0.1:{args.router_port}/", args.host)
        cpus["router"] = {"nginx": master_pid(args.router_dir / "nginx.pid"), **paas_cpu}
    if args.peer:
        targets["peer"] = (args.peer, args.peer_host or args.host)
        cpus["peer"] = {k: v for k, v in (("nginx", args.peer_nginx_pid),
                                          ("app", args.peer_app_pid)) if v}
    rows: dict[str, list[dict]] = {}
    base = Path(tempfile.mkdtemp(prefix="paas-bench-router-causes-"))
    base.chmod(0o755)
    try:
        with contextlib.ExitStack() as stack:
            for name in args.variants.split(","):
                if name:
                    url = stack.enter_context(nginx_copy(
                        args.router_dir, base, name, VARIANTS[name](conf, peer), routes))
                    targets[name] = (url, args.host)
                    cpus[name] = {"nginx": master_pid(base / name / "nginx.pid"), **paas_cpu}
            for url, host in targets.values():
                wrk(url, 1, host)  # warm-up
            for rnd in range(args.rounds):
                for name, (url, host) in targets.items():
                    time.sleep(args.pause)
                    r = measured(url, host, args.seconds, cpus[name])
                    r["round"] = rnd
                    rows.setdefault(name, []).append(r)
                    print(f"round {rnd} {name}: {r['rps']} req/s p99 {r['p99_ms']} ms "
                          f"non2xx {r['non_2xx']} {r['socket_errors']} "
                          f"cpu {r['cpu_us_per_request']}", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(json.dumps(report(rows, args)))


def report(rows: dict[str, list[dict]], args: argparse.Namespace) -> dict:
    medians = {name: statistics.median(r["rps"] for r in rs) for name, rs in rows.items()}
    cpu = {name: {k: statistics.median(r["cpu_us_per_request"][k] for r in rs)
                  for k in rs[0]["cpu_us_per_request"]} for name, rs in rows.items()}
    out: dict = {"bench": "router_causes", "seconds": args.seconds, "rounds": args.rounds,
                 "median_rps": medians, "median_cpu_us_per_request": cpu, "runs": rows}
    for ref in ("copy", "peer"):
        if ref in medians:
            out[f"ratio_to_{ref}"] = {n: round(v / medians[ref], 3) for n, v in medians.items()}
    # Per-round ratios to the peer: the spread of the one figure the target is about.
    if "peer" in rows:
        out["per_round_to_peer"] = {
            n: [round(a["rps"] / b["rps"], 3) for a, b in zip(rs, rows["peer"], strict=False)]
            for n, rs in rows.items() if n != "peer"}
    return out


if __name__ == "__main__":
    main()
