"""Many apps on one host: N Procfile-only apps (no package downloads), one web dyno each, all
answering through the router. Figures: the memory each app adds to the host (MemAvailable
before and after, divided by N), the dynos' own cgroup memory, and the platform's overhead
(the RSS of its processes and nginx) with N apps against the same platform with none (the
baseline, measured in the same run). Prints ONE JSON line.

    PAAS_TEST_SUBNETS=223 .venv/bin/python -m bench.load [--apps 50]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.platform import Platform, app_repo, git

PUSHES_AT_ONCE = 5


def mem_available_kb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1])
    raise RuntimeError("no MemAvailable in /proc/meminfo")


def _rss_kb(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    return next((int(line.split()[1]) for line in status.splitlines()
                 if line.startswith("VmRSS:")), 0)


def _ppid(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError):
        return 0


def platform_rss_kb(platform: Platform) -> int:
    """`paas up` and its services with their children (Celery's pool), and nginx."""
    return sum(_rss_kb(pid) for pid in platform_pids(platform))


def platform_pids(platform: Platform) -> set[int]:
    assert platform.process is not None
    pids = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]
    ours = {platform.process.pid}
    changed = True
    while changed:
        found = {pid for pid in pids if _ppid(pid) in ours and "runc" not in _cmd(pid)
                 and "/bin/sh" not in _cmd(pid)} - ours
        changed = bool(found)
        ours |= found
    nginx_pid = platform.home / "router" / "nginx.pid"
    master_text = nginx_pid.read_text().strip() if nginx_pid.exists() else ""
    if master_text.isdigit():  # empty while nginx starts
        master = int(master_text)
        ours |= {master} | {pid for pid in pids if _ppid(pid) == master}
    return ours


def _cmd(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def deploy_apps(platform: Platform, tmp: Path, names: list[str]) -> list[str]:
    """Creates and pushes the apps, PUSHES_AT_ONCE at a time; returns the ones that failed."""
    def deploy(name: str) -> str | None:
        platform.paas("apps:create", name)
        repo = app_repo(tmp / name, "procfile-only")
        result = git(repo, "push", platform.remote_url(name), "main", check=False)
        return None if result.returncode == 0 else f"{name}: {result.stderr[-500:]}"

    for name in names:
        (tmp / name).mkdir()
    with ThreadPoolExecutor(PUSHES_AT_ONCE) as pool:
        return [failure for failure in pool.map(deploy, names) if failure]


def answering(platform: Platform, names: list[str], timeout: float = 120) -> list[str]:
    """The apps that never served their page through the router within `timeout`."""
    waiting = set(names)
    deadline = time.monotonic() + timeout
    while waiting and time.monotonic() < deadline:
        for name in sorted(waiting):
            try:
                if "Procfile-only app" in platform.get(name).text:
                    waiting.discard(name)
            except Exception:  # not routed yet
                continue
        time.sleep(0.5)
    return sorted(waiting)


def dyno_memory_kb(platform: Platform, names: list[str]) -> float:
    total = 0.0
    with platform.api() as api:
        for name in names:
            for dyno in api.get(f"/v1/apps/{name}/dynos").json():
                total += float(dyno.get("memory_mb") or 0) * 1024
    return total / max(len(names), 1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--apps", type=int, default=50)
    args = parser.parse_args()
    platform = Platform.create()
    try:
        platform.up()
        time.sleep(3)  # let the services settle before the baseline
        baseline_rss = platform_rss_kb(platform)
        available_before = mem_available_kb()
        names = [f"load-{i:03d}" for i in range(args.apps)]
        with tempfile.TemporaryDirectory() as tmp:
            started = time.monotonic()
            failed_pushes = deploy_apps(platform, Path(tmp), names)
            silent = answering(platform, names)
            seconds = time.monotonic() - started
        loaded_rss = platform_rss_kb(platform)
        per_app = (available_before - mem_available_kb()) / args.apps
        print(json.dumps({
            "apps": args.apps,
            "failed_pushes": len(failed_pushes),
            "not_answering": len(silent),
            "deploy_all_seconds": round(seconds, 1),
            "host_memory_per_app_mb": round(per_app / 1024, 1),
            "dyno_cgroup_memory_per_app_mb": round(dyno_memory_kb(platform, names) / 1024, 1),
            "platform_rss_baseline_mb": round(baseline_rss / 1024, 1),
            "platform_rss_loaded_mb": round(loaded_rss / 1024, 1),
            "platform_rss_ratio_vs_baseline": round(loaded_rss / max(baseline_rss, 1), 2),
        }))
    finally:
        platform.down()


if __name__ == "__main__":
    main()
