"""Push wall time and peak receiver memory: paas's git receiver over HTTP and SSH, beside C
git's receive-pack receiving the same push into a local bare repository.

    .venv/bin/python bench/git.py [--sizes 1000,10000,100000]

Prints one JSON line. For each size (objects in the pushed history): seconds and peak RSS (MiB)
of each receiver, and the ratios against C git. A paas receiver's peak is the larger of the
receiver process's own peak and that of the git helpers it runs (index-pack); its RSS when
idle, before the push, is given beside it. Each push goes to a fresh receiver process, so
a peak belongs to one push. The helpers' peak is the kernel's ru_maxrss of waited children,
which counts a forked child's copy of the receiver until it execs git: an upper bound.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

APP = "bench"
GIT_ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_CONFIG_GLOBAL": "/dev/null", "LANG": "C", "GIT_TERMINAL_PROMPT": "0"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_history(path: Path, objects: int) -> None:
    """A repository of about `objects` objects: commits of 97 new files in a directory each."""
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True, env=GIT_ENV)
    files = 97
    commits = max(1, objects // (files + 3))
    proc = subprocess.Popen(["git", "fast-import", "--quiet"], cwd=path, env=GIT_ENV,
                            stdin=subprocess.PIPE)
    assert proc.stdin is not None
    for i in range(commits):
        out = [f"commit refs/heads/main\ncommitter Bench <b@example.com> {1700000000 + i} +0000"
               f"\ndata 10\ncommit {i:03d}\n"]
        for j in range(files):
            body = (f"# file {j} of commit {i}\n" + f"def f{j}():\n    return {i * j}\n" * 3)
            out.append(f"M 100644 inline d{i}/f{j}.py\ndata {len(body)}\n{body}\n")
        proc.stdin.write("".join(out).encode())
    proc.stdin.close()
    assert proc.wait() == 0


def count_objects(path: Path) -> int:
    out = subprocess.run(["git", "rev-list", "--objects", "--all"], cwd=path, env=GIT_ENV,
                         capture_output=True, text=True, check=True).stdout
    return len(out.splitlines())


def push(src: Path, url: str, env: dict[str, str], *extra: str) -> float:
    start = time.perf_counter()
    result = subprocess.run(["git", *extra, "push", "-q", url, "main"], cwd=src,
                            env={**GIT_ENV, **env}, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"push to {url} failed: {result.stderr}")
    return elapsed


def baseline(src: Path, work: Path) -> dict[str, float]:
    """C git: `git push` into a local bare repository; receive-pack's peak (and its index-pack's)
    measured by a wrapper that waits for it."""
    timed, measured = work / "baseline.git", work / "baseline-rss.git"
    for bare in (timed, measured):
        subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True, env=GIT_ENV)
    seconds = push(src, str(timed), {})  # timed without the measuring wrapper's start-up
    report = work / "baseline-rss"
    push_with_wrapper(src, measured, f"{sys.executable} {__file__} --measure {report} "
                                     "git-receive-pack")
    return {"seconds": seconds, "peak_rss_mb": float(report.read_text())}


def push_with_wrapper(src: Path, bare: Path, wrapper: str) -> float:
    start = time.perf_counter()
    result = subprocess.run(["git", "push", "-q", f"--receive-pack={wrapper}", str(bare), "main"],
                            cwd=src, env=GIT_ENV, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"baseline push failed: {result.stderr}")
    return elapsed


def measure(report: Path, command: list[str]) -> int:
    code = subprocess.run(command).returncode
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    report.write_text(f"{peak_kb / 1024:.1f}")
    return code


def paas_receiver(src: Path, work: Path, transport: str) -> dict[str, float]:
    root = work / f"{transport}-repos"
    root.mkdir()
    subprocess.run(["git", "init", "-q", "--bare", str(root / f"{APP}.git")], check=True,
                   env=GIT_ENV)
    http_port, ssh_port = free_port(), free_port()
    ready = work / f"{transport}-ready"
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(root), str(http_port),
                               str(ssh_port), str(ready)], stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not ready.exists():
        assert server.poll() is None and time.monotonic() < deadline, "receiver did not start"
        time.sleep(0.05)
    idle_mb = float(ready.read_text())
    if transport == "http":
        seconds = push(src, f"http://u:p@127.0.0.1:{http_port}/git/{APP}.git", {})
    else:
        key = work / "key"
        if not key.exists():
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)],
                           check=True)
        ssh = (f"ssh -F /dev/null -i {key} -o IdentitiesOnly=yes -o BatchMode=yes "
               f"-o UserKnownHostsFile={work / 'known_hosts'} -o StrictHostKeyChecking=no")
        seconds = push(src, f"ssh://git@127.0.0.1:{ssh_port}/{APP}.git",
                       {"GIT_SSH_COMMAND": ssh})
    urllib.request.urlopen(f"http://127.0.0.1:{http_port}/done", timeout=30).read()
    out, _ = server.communicate(timeout=30)
    peaks = json.loads(out.strip().splitlines()[-1])
    return {"seconds": seconds, "peak_rss_mb": max(peaks["self"], peaks["children"]),
            "receiver_peak_rss_mb": peaks["self"], "helpers_peak_rss_mb": peaks["children"],
            "idle_rss_mb": idle_mb}


class BenchBackend:
    """Everyone may push; a deploy moves the ref at once (compare-and-swap)."""

    def __init__(self, root: Path) -> None:
        from paas.repos import Repos

        self.repos = Repos(root)

    def authorize(self, app: str, password: str | None, write: bool) -> None:
        return None

    def user_for_key(self, key: Any) -> int | None:
        return 1

    def authorize_user(self, app: str, user_id: int | None, write: bool) -> None:
        return None

    def repo_path(self, app: str) -> Path:
        return self.repos.path(app)

    async def deploy(self, app: str, update: Any) -> AsyncIterator[str]:
        await asyncio.to_thread(self.repos.move_ref, app, update.ref, update.old, update.new)
        yield "-----> deployed"


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def serve(root: Path, http_port: int, ssh_port: int, ready: Path) -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from paas.git import git_routes, ssh

    backend = BenchBackend(root)

    async def done(_request: Any) -> PlainTextResponse:
        server.should_exit = True
        return PlainTextResponse("bye\n")

    app = Starlette(routes=[*git_routes(backend, max_push_bytes=4 << 30), Route("/done", done)])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=http_port,
                                           log_level="warning", lifespan="off"))

    async def main() -> None:
        acceptor = await ssh.start_server(backend, root, "127.0.0.1", ssh_port, 4 << 30)
        task = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.02)
        ready.write_text(f"{rss_mb():.1f}")
        await task
        acceptor.close()

    asyncio.run(main())
    usage = resource.getrusage
    print(json.dumps({"self": round(usage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                      "children": round(usage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)}))


def run(sizes: list[int]) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="paas-bench-git-") as tmp:
        for size in sizes:
            work = Path(tmp) / str(size)
            work.mkdir()
            src = work / "src"
            make_history(src, size)
            row: dict[str, Any] = {"objects": count_objects(src),
                                   "c_git": baseline(src, work)}
            for transport in ("http", "ssh"):
                row[transport] = paas_receiver(src, work, transport)
                row[f"{transport}_time_ratio"] = round(
                    row[transport]["seconds"] / row["c_git"]["seconds"], 2)
                row[f"{transport}_memory_ratio"] = round(
                    row[transport]["peak_rss_mb"] / row["c_git"]["peak_rss_mb"], 2)
            for part in ("c_git", "http", "ssh"):
                row[part] = {k: round(v, 3) for k, v in row[part].items()}
            figures[str(size)] = row
    return figures


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--serve", nargs=4)
    parser.add_argument("--measure", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    if args.serve:
        root, http_port, ssh_port, ready = args.serve
        serve(Path(root), int(http_port), int(ssh_port), Path(ready))
        return
    if args.measure:
        raise SystemExit(measure(Path(args.measure[0]), args.measure[1:]))
    sizes = [int(s) for s in args.sizes.split(",")]
    print(json.dumps({"bench": "git", "sizes": run(sizes)}))


if __name__ == "__main__":
    main()
