"""The platform's own memory, idle: `paas up` on free ports, one Flask app deployed, 30 s of
no requests, then PSS and RSS (from /proc/<pid>/smaps_rollup) of each platform process —
`paas up`'s tree and the daemons naming PAAS_HOME (nginx), without the dynos (a `runc` and
what runs below it, and its monitor). Prints ONE JSON line. Hold /tmp/heavy.lock around it.

    flock /tmp/heavy.lock .venv/bin/python -m bench.memory [--idle 30]
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import time
from pathlib import Path

from tests.platform import Platform, app_repo, git

SAMPLE, TEXT = "flask-hello", "Hello from paas"


def proc_table() -> dict[int, dict]:
    table: dict[int, dict] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            rollup = (entry / "smaps_rollup").read_text()
        except OSError:
            continue
        table[int(entry.name)] = {
            "ppid": int(stat.rsplit(")", 1)[1].split()[1]),
            "cmd": cmd.strip() or stat.split("(", 1)[1].rsplit(")", 1)[0],
            "pss_kb": _field(rollup, "Pss"), "rss_kb": _field(rollup, "Rss")}
    return table


def _field(rollup: str, name: str) -> int:
    found = re.search(rf"^{name}:\s+(\d+)", rollup, re.M)
    return int(found.group(1)) if found else 0


def descendants(table: dict[int, dict], root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, row in table.items():
        children.setdefault(row["ppid"], []).append(pid)
    found, todo = set(), [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def is_dyno_runc(cmd: str) -> bool:
    return cmd.split(" ", 1)[0].endswith("runc")


def is_dyno_monitor(cmd: str) -> bool:
    """The native monitor (paas-dyno-monitor), or the Python one it replaced."""
    return "paas-dyno-monitor" in cmd.split(" ", 1)[0] or "paas.runtime.monitor" in cmd


def platform_processes(table: dict[int, dict], supervisor: int, home: str) -> set[int]:
    """`paas up`'s tree and the processes naming PAAS_HOME, minus each dyno: its runc, what
    runs below it and the monitor above it (a `/bin/sh`, or `paas.runtime.monitor`)."""
    roots = {supervisor} | {pid for pid, row in table.items() if home in row["cmd"]}
    mine: set[int] = set()
    for root in roots:
        mine |= descendants(table, root) | {root}
    runcs = {pid for pid in mine if is_dyno_runc(table[pid]["cmd"])}
    dynos = {pid for pid in mine if is_dyno_monitor(table[pid]["cmd"])} | runcs
    for monitor in dynos - runcs:
        dynos |= descendants(table, monitor)
    for runc in runcs:
        dynos |= descendants(table, runc)
        parent = table[runc]["ppid"]
        if parent in mine and parent != supervisor and "paas" not in table[parent]["cmd"]:
            dynos.add(parent)
    return {pid for pid in mine - dynos if pid in table}


def role(cmd: str) -> str:
    for needle, name in (("paas up", "paas up"), ("paas.supervisor", "paas up"),
                         ("redis-server", "redis"),
                         ("paas.api", "api"), ("celery", "worker"),
                         ("paas.runtime.agent", "agent"), ("-m router", "router"),
                         ("paas.roles", "node"), ("nginx: master", "nginx master"),
                         ("nginx: worker", "nginx worker"), ("nginx", "nginx")):
        if needle in cmd:
            return name
    return cmd[:60]


def measure(platform: Platform) -> dict:
    assert platform.process is not None
    table = proc_table()
    pids = platform_processes(table, platform.process.pid, str(platform.home))
    rows = sorted(({"pid": pid, "role": role(table[pid]["cmd"]),
                    "pss_mib": round(table[pid]["pss_kb"] / 1024, 1),
                    "rss_mib": round(table[pid]["rss_kb"] / 1024, 1)} for pid in pids),
                  key=lambda row: -row["pss_mib"])
    return {"pss_mib": round(sum(table[p]["pss_kb"] for p in pids) / 1024, 1),
            "rss_mib": round(sum(table[p]["rss_kb"] for p in pids) / 1024, 1),
            "processes": len(rows), "by_process": rows}


def deploy(platform: Platform, tmp: Path) -> None:
    platform.paas("apps:create", "memory")
    repo = app_repo(tmp, SAMPLE)
    result = git(repo, "push", platform.remote_url("memory"), "main", check=False)
    if result.returncode != 0:
        raise SystemExit(f"push failed:\n{result.stderr}")
    platform.wait_for("memory", TEXT, timeout=180)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--idle", type=float, default=30.0)
    args = parser.parse_args()
    platform = Platform.create()
    try:
        platform.up()
        with tempfile.TemporaryDirectory(prefix="paas-bench-") as tmp:
            deploy(platform, Path(tmp))
            time.sleep(args.idle)
            figures = measure(platform)
    finally:
        platform.down()
    print(json.dumps({"bench": "memory", "idle_s": args.idle, **figures}))


if __name__ == "__main__":
    main()
