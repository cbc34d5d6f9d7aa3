#!/usr/bin/env python3
"""paas and piku side by side on one host: cold deploy, code-only redeploy, config change (each
push/command start -> first 200 with the expected body, polled every 20 ms), throughput (wrk
through each router, straight to the app, and to the same gunicorn in a bare netns + veth +
bridge), idle memory (1 app, then N apps), and a paas dyno's start against `runc run /bin/true`.

Every timed batch runs under `flock $LOCK` (default /tmp/heavy.lock) in a child process, paas and
piku alternating (A B A B ...). Results: one JSON file per batch in --out; `report` prints the
tables, the summary table of docs/PERFORMANCE.md and, last, each of its rows as ONE JSON line.
The scale batch (its own lock hold) adds apps until each platform has --scale-apps (50), checks
they all answer, times redeploys and config changes with them up, and paas's
`ps:scale web=--scale-web`, the way back to web=1 and the wake from web=0.

    measure.py run    --out DIR [--cold 5] [--redeploy 7] [--config 7] [--wrk-rounds 3] [--many 10]
                      [--scale-apps 50] [--scale-runs 3] [--scale-web 10] [--only ...]
    measure.py batch  NAME --out DIR      (one batch; `run` calls this under flock)
    measure.py report --out DIR
    measure.py cleanup --out DIR          (destroys the cold and many apps left by a broken run)

Environment: PAAS_BIN, PAAS_HOME, PAAS_API_PORT, PAAS_ROUTER_PORT (paas must be up, started with
them); PIKU_RUN, PIKU_NGINX_PORT, PIKU_USER (setup-piku.sh install + start); APP_SRC (the flask
app); MEASURE_WORK (the app repos, default /tmp/perf-apps);
BARE_NET (the /24 of the bare netns baseline, default 10.234.0).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

HERE = Path(__file__).resolve().parent
LOCK = os.environ.get("LOCK", "/tmp/heavy.lock")
APP_SRC = Path(os.environ.get("APP_SRC", HERE / "app"))
PAAS_BIN = os.environ.get("PAAS_BIN") or shutil.which("paas") or "paas"
PAAS_HOME = os.environ.get("PAAS_HOME", "")
PAAS_API_PORT = int(os.environ.get("PAAS_API_PORT", "48400"))
PAAS_ROUTER_PORT = int(os.environ.get("PAAS_ROUTER_PORT", "48080"))
PAAS_DYNO_PORT = int(os.environ.get("PAAS_DYNO_PORT", "5000"))
PIKU_RUN = Path(os.environ.get("PIKU_RUN", "/tmp/piku-run"))
PIKU_NGINX_PORT = int(os.environ.get("PIKU_NGINX_PORT", "49080"))
PIKU_HOME = Path("/home", os.environ.get("PIKU_USER", "piku"))
BARE_NET = os.environ.get("BARE_NET", "10.234.0")
POLL = 0.02
WORK = Path(os.environ.get("MEASURE_WORK", "/tmp/perf-apps"))
GIT_ID = ["-c", "user.email=measure@localhost", "-c", "user.name=measure"]

Json = dict[str, Any]
Target = tuple[str, int, str]  # (address, port, Host header)
Command = tuple[list[str], dict[str, str]]  # (argv, extra environment)
ProcTable = dict[int, Json]


def sh(cmd: list[str], check: bool = True, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=check, **kw)


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


# ---------------------------------------------------------------- platforms

class Platform(Protocol):
    name: str

    def prepare(self, repo: Path, app: str) -> None: ...
    def create(self, app: str) -> None: ...
    def push_cmd(self, app: str) -> Command: ...
    def target(self, app: str) -> Target: ...
    def config_cmd(self, app: str, key: str, value: str) -> Command: ...
    def direct(self, app: str) -> tuple[str, int]: ...
    def destroy(self, app: str) -> None: ...
    def processes(self, table: ProcTable) -> tuple[set[int], set[int], set[int]]: ...


class Paas:
    name = "paas"

    def __init__(self) -> None:
        if not PAAS_HOME:
            sys.exit("PAAS_HOME is not set (the home `paas up` runs with)")
        self.token = Path(PAAS_HOME, "admin-token").read_text().strip()

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return sh([PAAS_BIN, *args], check=check)

    def prepare(self, repo: Path, app: str) -> None:
        (repo / "Procfile").write_text("web: gunicorn --workers 1 hello:app\n")

    def create(self, app: str) -> None:
        self.cli("apps:create", app)

    def push_cmd(self, app: str) -> Command:
        url = f"http://user:{self.token}@127.0.0.1:{PAAS_API_PORT}/git/{app}.git"
        return ["git", "push", url, "main"], {}

    def target(self, app: str) -> Target:
        return ("127.0.0.1", PAAS_ROUTER_PORT, f"{app}.localhost")

    def config_cmd(self, app: str, key: str, value: str) -> Command:
        return [PAAS_BIN, "config:set", f"{key}={value}", "-a", app], {}

    def direct(self, app: str) -> tuple[str, int]:
        dynos = json.loads(self.cli("ps", "-a", app, "--json").stdout)
        web = [d for d in dynos if d["type"] == "web" and d.get("up")]
        return (web[0]["ip"], PAAS_DYNO_PORT)

    def destroy(self, app: str) -> None:
        self.cli("apps:destroy", app, "--confirm", app, check=False)

    def processes(self, table: ProcTable) -> tuple[set[int], set[int], set[int]]:
        """(core, per-app platform, app) pids of this paas: the supervisor's tree and the
        processes naming PAAS_HOME (nginx, the dyno monitors, runc) with theirs; app = below a
        `runc run` or a native dyno monitor (the container's init, re-parented to it);
        per-app platform = each monitor and any `runc run` (above the app, or starting it)."""
        sup = int(Path(PAAS_HOME, "paas-up.pid").read_text().split()[0])
        roots = {sup} | {p for p, r in table.items() if PAAS_HOME in r["cmd"]}
        mine: set[int] = set()
        for r in roots:
            mine |= descendants(table, r) | {r}
        runcs = {p for p in mine if is_runc_run(table[p]["cmd"])}
        natives = {p for p in mine if is_native_monitor(table[p]["cmd"])}
        app: set[int] = set()
        for r in runcs:
            app |= descendants(table, r)
        for n in natives:
            app |= descendants(table, n) - runcs
        monitors = {table[r]["ppid"] for r in runcs
                    if table[r]["ppid"] in mine and is_monitor(table[table[r]["ppid"]]["cmd"])}
        per_app = runcs | monitors | natives
        app -= per_app
        return mine - app - per_app, per_app, app


def is_runc_run(cmd: str) -> bool:
    return cmd.startswith(("runc ", "/usr/sbin/runc ", "/usr/bin/runc ")) and " run " in cmd


def is_native_monitor(cmd: str) -> bool:
    """A dyno's monitor since issue 15 (paas/runtime/native/dyno-monitor.c): `runc` under it
    exits once the container runs."""
    return cmd.split(" ", 1)[0].endswith("/paas-dyno-monitor")


def is_monitor(cmd: str) -> bool:
    """A dyno's monitor: paas.runtime.monitor (a shell in older versions)."""
    return "paas.runtime.monitor" in cmd or cmd.startswith(("/bin/sh", "sh "))


class Piku:
    name = "piku"

    def prepare(self, repo: Path, app: str) -> None:
        procfile = "web: gunicorn --workers 1 --bind 127.0.0.1:$PORT hello:app\n"
        (repo / "Procfile").write_text(procfile)
        # piku reads ENV from the repo; its nginx config needs NGINX_SERVER_NAME before the
        # first push
        (repo / "ENV").write_text(f"NGINX_SERVER_NAME={app}.localhost\n"
                                  "NGINX_IPV4_ADDRESS=127.0.0.1\nDISABLE_IPV6=true\n")

    def create(self, app: str) -> None:  # piku creates the app on its first push
        pass

    def push_cmd(self, app: str) -> Command:
        return (["git", "push", f"piku@localhost:{app}", "main"],
                {"GIT_SSH_COMMAND": str(PIKU_RUN / "fake-ssh")})

    def target(self, app: str) -> Target:
        return ("127.0.0.1", PIKU_NGINX_PORT, f"{app}.localhost")

    def config_cmd(self, app: str, key: str, value: str) -> Command:
        return [str(PIKU_RUN / "piku"), "config:set", app, f"{key}={value}"], {}

    def direct(self, app: str) -> tuple[str, int]:
        live = (PIKU_HOME / ".piku/envs" / app / "LIVE_ENV").read_text()
        port = re.search(r"^PORT=(\d+)$", live, re.M)
        if not port:
            sys.exit(f"piku: no PORT in {app}'s LIVE_ENV")
        return ("127.0.0.1", int(port.group(1)))

    def destroy(self, app: str) -> None:
        sh([str(PIKU_RUN / "piku"), "destroy", app], check=False)

    def processes(self, table: ProcTable) -> tuple[set[int], set[int], set[int]]:
        roots = [int(Path(PIKU_RUN, f).read_text().split()[0])
                 for f in ("emperor.pid", "nginx.pid", "watcher.pid")]
        mine: set[int] = set()
        for r in roots:
            if r in table:
                mine |= descendants(table, r) | {r}
        vassals = {p for p in mine if re.match(r"^[\w.-]+:\w+:uWSGI master", table[p]["cmd"])}
        # app: the Procfile command's tree (its sh -c too, as in paas)
        app: set[int] = set()
        for v in vassals:
            app |= descendants(table, v)
        return mine - app - vassals, set(vassals), app


PLATFORMS: dict[str, type[Paas] | type[Piku]] = {"paas": Paas, "piku": Piku}


def both() -> list[Platform]:
    return [Paas(), Piku()]


# ---------------------------------------------------------------- repos

def new_repo(platform: Platform, app: str) -> Path:
    repo = WORK / f"{platform.name}-{app}"
    shutil.rmtree(repo, ignore_errors=True)
    shutil.copytree(APP_SRC, repo)
    platform.prepare(repo, app)
    sh(["git", "init", "-q", "-b", "main"], cwd=repo)
    commit(repo, "init")
    return repo


def commit(repo: Path, msg: str) -> None:
    sh(["git", "add", "-A"], cwd=repo)
    sh(["git", *GIT_ID, "commit", "-q", "-m", msg], cwd=repo)


def set_body(repo: Path, body: str) -> None:
    src = (repo / "hello.py").read_text()
    src = re.sub(r"return ([\"'])python/flask[^\"']*\1", f'return "{body}"', src, count=1)
    (repo / "hello.py").write_text(src)
    commit(repo, body)


# ---------------------------------------------------------------- polling one action

def get(target: Target, path: str, timeout: float = 2.0) -> tuple[int, str]:
    host, port, hosthdr = target
    c = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        c.request("GET", path, headers={"Host": hosthdr})
        r = c.getresponse()
        return r.status, r.read(200).decode("utf-8", "replace")
    except (OSError, http.client.HTTPException) as e:
        return -1, type(e).__name__
    finally:
        c.close()


class Poller:
    """GETs the target every POLL s on a new connection: (sent, answered, status, body)."""

    def __init__(self, target: Target, path: str, t0: float) -> None:
        self.samples: list[tuple[float, float, int, str]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.poll, args=(target, path, t0), daemon=True)

    def poll(self, target: Target, path: str, t0: float) -> None:
        while not self.stop.is_set():
            sent = time.monotonic() - t0
            status, body = get(target, path)
            self.samples.append((sent, time.monotonic() - t0, status, body))
            rest = POLL - (time.monotonic() - t0 - sent)
            if rest > 0:
                time.sleep(rest)

    def first_good(self, expected: str) -> float | None:
        return next((s[1] for s in list(self.samples) if s[2] == 200 and s[3] == expected), None)


def read_lines(stream: Any, t0: float, lines: list[tuple[float, str]]) -> None:
    """The command's output, line by line (\\r too: git's progress), each with its time."""
    buf = b""
    while chunk := os.read(stream.fileno(), 65536):
        buf += chunk
        *done, buf = re.split(rb"[\r\n]", buf)
        lines.extend((time.monotonic() - t0, x.decode("utf-8", "replace"))
                     for x in done if x.strip())
    if buf.strip():
        lines.append((time.monotonic() - t0, buf.decode("utf-8", "replace")))


def non200_runs(samples: list[tuple[float, float, int, str]]) -> list[Json]:
    """Runs of non-200s: from the first failing request's send time to the next 200's."""
    runs: list[Json] = []
    cur: Json | None = None
    for sent, answered, status, _ in samples:
        if status != 200:
            if cur is None:
                cur = {"start": sent, "end": sent, "n": 0, "status": {}}
            cur["n"] += 1
            cur["end"] = answered
            cur["status"][str(status)] = cur["status"].get(str(status), 0) + 1
        elif cur is not None:
            runs.append({"start": round(cur["start"], 3), "dur": round(sent - cur["start"], 3),
                         "n": cur["n"], "status": cur["status"]})
            cur = None
    if cur is not None:
        runs.append({"start": round(cur["start"], 3), "dur": round(cur["end"] - cur["start"], 3),
                     "n": cur["n"], "status": cur["status"], "open": True})
    return runs


def timed(cmd: list[str], extra_env: dict[str, str], target: Target, path: str, expected: str,
          *, tail: float = 2.0, max_wait: float = 240.0, cwd: Path | None = None) -> Json:
    """Run cmd; poll target every 20 ms from the moment it starts. Returns the time to the first
    200 with `expected`, the command's own time, the non-200 runs, and timestamped output."""
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", **extra_env}
    lines: list[tuple[float, str]] = []
    t0 = time.monotonic()
    t0_epoch = time.time()
    poller = Poller(target, path, t0)
    poller.thread.start()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    reader = threading.Thread(target=read_lines, args=(proc.stdout, t0, lines), daemon=True)
    reader.start()
    live_at = cmd_at = None
    while time.monotonic() - t0 < max_wait:
        if cmd_at is None and proc.poll() is not None:
            cmd_at = time.monotonic() - t0
        if live_at is None:
            live_at = poller.first_good(expected)
        if live_at is not None and cmd_at is not None \
                and time.monotonic() - t0 > max(live_at, cmd_at) + tail:
            break
        time.sleep(0.01)
    poller.stop.set()
    poller.thread.join()
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    reader.join(5)
    if cmd_at is None:
        cmd_at = time.monotonic() - t0
    samples = poller.samples
    runs = non200_runs(samples)
    first_new = next((i for i, x in enumerate(samples) if x[2] == 200 and x[3] == expected), None)
    old_after_new = 0 if first_new is None else sum(
        1 for x in samples[first_new:] if x[2] == 200 and x[3] != expected)
    return {
        "live_s": round(live_at, 3) if live_at is not None else None,
        "cmd_s": round(cmd_at, 3), "rc": proc.returncode, "requests": len(samples),
        "non200": sum(r["n"] for r in runs), "non200_s": round(sum(r["dur"] for r in runs), 3),
        "runs": runs, "old_after_new": old_after_new, "t0_epoch": t0_epoch,
        "output": [(round(t, 3), line) for t, line in lines],
    }


def wait_live(platform: Platform, app: str, path: str = "/", expected: str | None = None,
              limit: float = 120.0) -> bool:
    t = time.monotonic()
    while time.monotonic() - t < limit:
        st, body = get(platform.target(app), path)
        if st == 200 and (expected is None or body == expected):
            return True
        time.sleep(0.2)
    return False


# ---------------------------------------------------------------- processes / memory

def proc_row(d: Path) -> Json:
    stat = (d / "stat").read_text()
    ppid = int(stat.rsplit(")", 1)[1].split()[1])
    cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace").strip()
    status = (d / "status").read_text()
    rss = re.search(r"^VmRSS:\s+(\d+)", status, re.M)
    uid = re.search(r"^Uid:\s+(\d+)", status, re.M)
    try:
        pss = re.search(r"^Pss:\s+(\d+)", (d / "smaps_rollup").read_text(), re.M)
    except OSError:
        pss = None
    return {"ppid": ppid, "cmd": cmd or stat.split("(", 1)[1].rsplit(")", 1)[0],
            "rss_kb": int(rss.group(1)) if rss else 0, "pss_kb": int(pss.group(1)) if pss else 0,
            "uid": int(uid.group(1)) if uid else -1}


def proc_table() -> ProcTable:
    table = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                table[int(d.name)] = proc_row(d)
    return table


def descendants(table: ProcTable, pid: int) -> set[int]:
    kids: dict[int, list[int]] = {}
    for p, r in table.items():
        kids.setdefault(r["ppid"], []).append(p)
    out: set[int] = set()
    todo = [pid]
    while todo:
        for k in kids.get(todo.pop(), []):
            if k not in out:
                out.add(k)
                todo.append(k)
    return out


def memory(platform: Platform) -> Json:
    table = proc_table()
    core, per_app, app = platform.processes(table)

    def part(pids: set[int]) -> Json:
        rows = sorted(({"pid": p, "rss_kb": table[p]["rss_kb"], "pss_kb": table[p]["pss_kb"],
                        "uid": table[p]["uid"], "cmd": table[p]["cmd"][:140]} for p in pids),
                      key=lambda r: -r["rss_kb"])
        return {"rss_mib": round(sum(r["rss_kb"] for r in rows) / 1024, 1),
                "pss_mib": round(sum(r["pss_kb"] for r in rows) / 1024, 1), "n": len(rows),
                "procs": rows}

    return {"core": part(core), "per_app_platform": part(per_app), "app": part(app)}


# ---------------------------------------------------------------- paas's platform log

LOG_MARKS = ("Starting process", "app[web", "Listening at", "State changed from starting to up",
             "Stopping all processes with SIGTERM")


def paas_log_marks(p: Platform, app: str, r: Json) -> None:
    """paas: when the platform log's lines of this deploy came, s after the push/command started
    (from the API's log stream: the Redis entry id is its time in ms)."""
    if not isinstance(p, Paas):
        return
    try:
        time.sleep(1.0)  # the old dyno's stop comes after the new one serves
        lines = json.loads(p.cli("logs", "-a", app, "-n", "300", "--json").stdout)
    except (subprocess.CalledProcessError, ValueError):
        return
    marks: dict[str, float] = {}
    for entry in lines:
        at = int(str(entry.get("id", "0-0")).split("-")[0]) / 1000 - r["t0_epoch"]
        text = f"{entry.get('source', '')}: {entry.get('line', '')}"
        for m in LOG_MARKS:
            if at >= 0 and m in text and m not in marks:
                marks[m] = round(at, 3)
    r["log_marks"] = marks


# ---------------------------------------------------------------- batches

def state_path(out: Path) -> Path:
    return out / "state.json"


def load_state(out: Path) -> Json:
    p = state_path(out)
    return json.loads(p.read_text()) if p.exists() else {}


def save_state(out: Path, st: Json) -> None:
    state_path(out).write_text(json.dumps(st, indent=1))


def batch_cold(out: Path, args: argparse.Namespace) -> Json:
    st = load_state(out)
    res: Json = {"paas": [], "piku": []}
    cold = st.setdefault("cold_apps", [])
    for i in range(args.cold):
        for p in both():
            app = f"{p.name[:2]}c{os.getpid() % 1000}x{i}"
            repo = new_repo(p, app)
            p.create(app)
            cold.append([p.name, app])
            save_state(out, st)
            cmd, env = p.push_cmd(app)
            r = timed(cmd, env, p.target(app), "/", "python/flask", cwd=repo)
            r["app"] = app
            r["load"] = loadavg()
            res[p.name].append(r)
            print(f"cold {p.name} {app}: live {r['live_s']} s, push {r['cmd_s']} s rc {r['rc']}",
                  flush=True)
            time.sleep(2)
    return res


def ensure_bench(out: Path) -> Json:
    """The apps for redeploys, config changes, wrk and memory: deployed once, PERF_VAL=v0."""
    st = load_state(out)
    if "bench" in st:
        return st
    st["bench"] = {}
    for p in both():
        app = f"{p.name[:2]}bench"
        p.destroy(app)
        repo = new_repo(p, app)
        p.create(app)
        cmd, env = p.push_cmd(app)
        r = subprocess.run(cmd, cwd=repo, env={**os.environ, **env}, capture_output=True,
                           text=True)
        if r.returncode != 0 or not wait_live(p, app, "/", "python/flask"):
            sys.exit(f"{p.name}: bench app did not deploy: {r.stderr[-2000:]}")
        c, e = p.config_cmd(app, "PERF_VAL", "v0")
        subprocess.run(c, env={**os.environ, **e}, capture_output=True, text=True, check=True)
        if not wait_live(p, app, "/PERF_VAL", "v0"):
            sys.exit(f"{p.name}: PERF_VAL=v0 did not show")
        st["bench"][p.name] = {"app": app, "repo": str(repo), "rev": 0, "val": 0}
    save_state(out, st)
    return st


def dyno_start(p: Platform, app: str, r: Json) -> None:
    """paas: when the new web dyno was started, seconds after the push/command started."""
    if isinstance(p, Paas):
        try:
            dynos = json.loads(p.cli("ps", "-a", app, "--json").stdout)
            started = max(d["started_at"] for d in dynos if d["type"] == "web")
            r["dyno_started_s"] = round(started - r["t0_epoch"], 3)
        except (subprocess.CalledProcessError, ValueError, KeyError):
            pass


def batch_redeploy(out: Path, args: argparse.Namespace) -> Json:
    st = load_state(out)
    res: Json = {"paas": [], "piku": []}
    for _ in range(args.redeploy):
        for p in both():
            b = st["bench"][p.name]
            b["rev"] += 1
            body = f"python/flask rev {b['rev']}"
            repo = Path(b["repo"])
            set_body(repo, body)
            cmd, env = p.push_cmd(b["app"])
            r = timed(cmd, env, p.target(b["app"]), "/", body, cwd=repo)
            r["load"] = loadavg()
            dyno_start(p, b["app"], r)
            paas_log_marks(p, b["app"], r)
            res[p.name].append(r)
            save_state(out, st)
            print(f"redeploy {p.name}: live {r['live_s']} s, push {r['cmd_s']} s, "
                  f"non-200 {r['non200']} over {r['non200_s']} s", flush=True)
            time.sleep(3)
    return res


def batch_config(out: Path, args: argparse.Namespace) -> Json:
    st = load_state(out)
    res: Json = {"paas": [], "piku": []}
    for _ in range(args.config):
        for p in both():
            b = st["bench"][p.name]
            b["val"] += 1
            val = f"v{b['val']}"
            cmd, env = p.config_cmd(b["app"], "PERF_VAL", val)
            r = timed(cmd, env, p.target(b["app"]), "/PERF_VAL", val)
            r["load"] = loadavg()
            dyno_start(p, b["app"], r)
            paas_log_marks(p, b["app"], r)
            res[p.name].append(r)
            save_state(out, st)
            print(f"config {p.name}: live {r['live_s']} s, cmd {r['cmd_s']} s, "
                  f"non-200 {r['non200']} over {r['non200_s']} s", flush=True)
            time.sleep(3)
    return res


def parse_wrk(text: str) -> Json:
    def ms(m: re.Match[str] | None) -> float | None:
        if not m:
            return None
        unit = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[m.group(2)]
        return round(float(m.group(1)) * unit, 3)

    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    errs = re.search(r"Socket errors: (.*)", text)
    return {"rps": float(rps.group(1)) if rps else None,
            "p50_ms": ms(re.search(r"^\s+50%\s+([\d.]+)(us|ms|s|m)\b", text, re.M)),
            "p99_ms": ms(re.search(r"^\s+99%\s+([\d.]+)(us|ms|s|m)\b", text, re.M)),
            "non2xx": int(non2xx.group(1)) if non2xx else 0,
            "socket_errors": errs.group(1) if errs else ""}


def socket_state() -> Json:
    """TIME_WAIT sockets and conntrack entries now: both grow with every connection a run
    opens (gunicorn's sync worker closes each one), and a later run inherits them."""
    tw = subprocess.run(["ss", "-Htan", "state", "time-wait"], capture_output=True, text=True)
    count = Path("/proc/sys/net/netfilter/nf_conntrack_count")
    return {"time_wait": len(tw.stdout.splitlines()),
            "conntrack": int(count.read_text()) if count.exists() else None}


def wrk(url: str, hosthdr: str, seconds: int) -> Json:
    before = socket_state()
    t = subprocess.run(["wrk", "-t2", "-c20", f"-d{seconds}s", "--latency", "-H",
                        f"Host: {hosthdr}", url], capture_output=True, text=True,
                       timeout=seconds + 60)
    r = parse_wrk(t.stdout)
    r.update(url=url, load=loadavg(), raw=t.stdout, before=before)
    return r


def ip(*args: str) -> None:
    sh(["ip", *args])


@contextlib.contextmanager
def bare_netns(app_dir: Path, venv: Path) -> Iterator[tuple[str, float | None]]:
    """The bench app's gunicorn (piku's build of it) in a netns of its own behind a veth on a
    bridge: the path a dyno's packets take, without runc, seccomp or cgroups. Yields its URL and
    gunicorn's boot (its start to the first 200: the app's own part of a dyno's start)."""
    ns, br, veth = "pbench-ns", "pbench-br", "pbench-v"
    ip("link", "add", br, "type", "bridge")
    try:
        ip("addr", "add", f"{BARE_NET}.1/24", "dev", br)
        ip("link", "set", br, "up")
        ip("netns", "add", ns)
        ip("link", "add", veth, "type", "veth", "peer", "name", f"{veth}c")
        ip("link", "set", f"{veth}c", "netns", ns)
        ip("link", "set", veth, "master", br, "up")
        ip("-n", ns, "addr", "add", f"{BARE_NET}.2/24", "dev", f"{veth}c")
        ip("-n", ns, "link", "set", f"{veth}c", "up")
        ip("-n", ns, "link", "set", "lo", "up")
        started = time.monotonic()
        gunicorn = subprocess.Popen(
            ["ip", "netns", "exec", ns, str(venv / "bin/gunicorn"), "--workers", "1",
             "--bind", f"0.0.0.0:{PAAS_DYNO_PORT}", "--chdir", str(app_dir), "hello:app"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            url = f"http://{BARE_NET}.2:{PAAS_DYNO_PORT}/"
            target = (f"{BARE_NET}.2", PAAS_DYNO_PORT, "bare")
            boot = None
            while boot is None and time.monotonic() - started < 20:
                if get(target, "/", timeout=0.5)[0] == 200:
                    boot = round(time.monotonic() - started, 3)
                time.sleep(0.01)
            yield url, boot
        finally:
            gunicorn.terminate()
            gunicorn.wait(10)
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        subprocess.run(["ip", "link", "del", br], capture_output=True)
        subprocess.run(["ip", "link", "del", veth], capture_output=True)


def batch_wrk(out: Path, args: argparse.Namespace) -> Json:
    st = load_state(out)
    res: Json = {}
    piku_app = st["bench"]["piku"]["app"]
    for rnd in range(args.wrk_rounds):
        for p in both():
            app = st["bench"][p.name]["app"]
            host, port, hosthdr = p.target(app)
            dip, dport = p.direct(app)
            for kind, url in (("router", f"http://{host}:{port}/"),
                              ("direct", f"http://{dip}:{dport}/")):
                r = wrk(url, hosthdr, args.wrk_seconds)
                r["round"] = rnd
                res.setdefault(f"{p.name}_{kind}", []).append(r)
                print(f"wrk {p.name} {kind} {url}: {r['rps']} req/s p99 {r['p99_ms']} ms "
                      f"non2xx {r['non2xx']} {r['socket_errors']} (before: {r['before']})",
                      flush=True)
                time.sleep(2)
        with bare_netns(PIKU_HOME / ".piku/apps" / piku_app,
                        PIKU_HOME / ".piku/envs" / piku_app) as (url, boot):
            r = wrk(url, "bare", args.wrk_seconds)
            r.update(round=rnd, gunicorn_boot_s=boot)
            res.setdefault("bare_netns", []).append(r)
            print(f"wrk bare netns {url}: {r['rps']} req/s p99 {r['p99_ms']} ms", flush=True)
        time.sleep(2)
    return res


def batch_mem(out: Path, args: argparse.Namespace) -> Json:
    time.sleep(args.settle)
    return {p.name: memory(p) for p in both()}


def batch_many(out: Path, args: argparse.Namespace) -> Json:
    """Deploy apps until each platform has args.many (the bench app counts), settle, memory."""
    st = load_state(out)
    many = st.setdefault("many_apps", [])
    deploys: Json = {"paas": [], "piku": []}
    for i in range(args.many - 1):
        for p in both():
            app = f"{p.name[:2]}m{i}"
            repo = new_repo(p, app)
            p.create(app)
            many.append([p.name, app])
            save_state(out, st)
            cmd, env = p.push_cmd(app)
            t = time.monotonic()
            r = subprocess.run(cmd, cwd=repo, env={**os.environ, **env}, capture_output=True,
                               text=True)
            ok = r.returncode == 0 and wait_live(p, app, "/", "python/flask")
            took = round(time.monotonic() - t, 2)
            deploys[p.name].append({"app": app, "ok": ok, "s": took})
            print(f"many {p.name} {app}: ok={ok} {took} s", flush=True)
    time.sleep(args.settle)
    return {"apps": args.many, "deploys": deploys, "memory": {p.name: memory(p) for p in both()}}


def true_bundle(root: Path) -> Path:
    """A runc bundle of /bin/true alone: the binary and its libraries, read-only."""
    bundle = root / "bundle"
    rootfs = bundle / "rootfs"
    libs = re.findall(r"(/\S+) \(0x", sh(["ldd", "/bin/true"]).stdout)
    for f in ["/bin/true", *libs]:
        dest = rootfs / Path(f).resolve().relative_to("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(Path(f).resolve(), dest)
        if Path(f).resolve() != Path(f):  # /lib64/ld-linux... -> the real file
            link = rootfs / Path(f).relative_to("/")
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.exists():
                link.symlink_to(Path(f).resolve())
    sh(["runc", "spec"], cwd=bundle)
    spec = json.loads((bundle / "config.json").read_text())
    spec["process"].update(terminal=False, args=["/bin/true"])
    (bundle / "config.json").write_text(json.dumps(spec))
    return bundle


def batch_start(out: Path, args: argparse.Namespace) -> Json:
    """`runc run` of /bin/true against a one-off paas dyno of `true` (`paas run`: API, agent,
    runc, the exit code back), alternating."""
    st = load_state(out)
    app = st["bench"]["paas"]["app"]
    res: Json = {"runc_true_s": [], "paas_run_true_s": []}
    with tempfile.TemporaryDirectory(prefix="perf-runc-") as tmp:
        bundle = true_bundle(Path(tmp))
        runc_root = Path(tmp) / "runc"
        for i in range(args.starts):
            t = time.monotonic()
            sh(["runc", "--root", str(runc_root), "run", "--bundle", str(bundle), f"true{i}"])
            res["runc_true_s"].append(round(time.monotonic() - t, 3))
            t = time.monotonic()
            r = sh([PAAS_BIN, "run", "-a", app, "--", "true"], check=False)
            res["paas_run_true_s"].append(round(time.monotonic() - t, 3) if r.returncode == 0
                                          else None)
            print(f"start: runc run /bin/true {res['runc_true_s'][-1]} s, paas run true "
                  f"{res['paas_run_true_s'][-1]} s rc {r.returncode}", flush=True)
            time.sleep(1)
    return res


# ---------------------------------------------------------------- 50 apps, scale, wake

def deploy_untimed(p: Platform, app: str) -> Json:
    repo = new_repo(p, app)
    p.create(app)
    cmd, env = p.push_cmd(app)
    t = time.monotonic()
    r = subprocess.run(cmd, cwd=repo, env={**os.environ, **env}, capture_output=True, text=True)
    ok = r.returncode == 0 and wait_live(p, app, "/", "python/flask")
    return {"app": app, "ok": ok, "s": round(time.monotonic() - t, 2)}


def apps_of(st: Json, name: str) -> list[str]:
    """The apps of platform `name` this run has deployed and not destroyed."""
    apps = [st["bench"][name]["app"]]
    for key in ("many_apps", "scale_apps"):
        apps += [a for n, a in st.get(key, []) if n == name]
    return apps


def fill_to(out: Path, p: Platform, count: int, at_once: int) -> list[Json]:
    """Deploys apps of p until it has `count` (not timed; `at_once` pushes at a time)."""
    st = load_state(out)
    have = len(apps_of(st, p.name))
    names = [f"{p.name[:2]}s{i}" for i in range(max(count - have, 0))]
    st.setdefault("scale_apps", []).extend([p.name, a] for a in names)
    save_state(out, st)
    with ThreadPoolExecutor(at_once) as pool:
        done = list(pool.map(lambda a: deploy_untimed(p, a), names))
    print(f"scale: {p.name} has {have + sum(d['ok'] for d in done)} apps "
          f"({sum(not d['ok'] for d in done)} failed)", flush=True)
    return done


def all_answering(p: Platform, apps: list[str]) -> Json:
    bad = [a for a in apps if get(p.target(a), "/")[0] != 200]
    return {"apps": len(apps), "answering": len(apps) - len(bad), "not": bad[:10]}


def web_dynos(p: Paas, app: str) -> list[Json]:
    r = p.cli("ps", "-a", app, "--json", check=False)
    try:
        return [d for d in json.loads(r.stdout or "[]") if d["type"] == "web"]
    except ValueError:
        return []


def until(test: Any, limit: float = 60.0, every: float = 0.05) -> float | None:
    """Seconds until test() is true (polled), None after `limit`."""
    t = time.monotonic()
    while time.monotonic() - t < limit:
        if test():
            return round(time.monotonic() - t, 3)
        time.sleep(every)
    return None


def scale_once(p: Paas, app: str, web: int) -> Json:
    """ps:scale web=N from web=1: until N web dynos are up (each passed the platform's check),
    then back to web=1 until one is left; then web=0 and the wake: web=1 until the router
    answers 200. Requests through the router all along (web=0 aside) count the failures."""
    target = p.target(app)
    res: Json = {}
    t0 = time.monotonic()
    poller = Poller(target, "/", t0)
    poller.thread.start()
    p.cli("ps:scale", f"web={web}", "-a", app)
    res["up_cmd_s"] = round(time.monotonic() - t0, 3)
    took = until(lambda: sum(1 for d in web_dynos(p, app) if d.get("up")) >= web)
    res["up_s"] = None if took is None else round(res["up_cmd_s"] + took, 3)
    t1 = time.monotonic()
    p.cli("ps:scale", "web=1", "-a", app)
    took = until(lambda: len(web_dynos(p, app)) == 1)
    res["down_s"] = None if took is None else round(time.monotonic() - t1, 3)
    poller.stop.set()
    poller.thread.join()
    res["requests"] = len(poller.samples)
    bad = [x for x in poller.samples if x[2] != 200]
    res["non200"] = len(bad)
    res["non200_samples"] = [[round(x[0], 3), round(x[1], 3), x[2], x[3][:80]] for x in bad[:20]]
    p.cli("ps:scale", "web=0", "-a", app)
    until(lambda: not web_dynos(p, app) and get(target, "/")[0] != 200)
    t2 = time.monotonic()
    p.cli("ps:scale", "web=1", "-a", app)
    took = until(lambda: get(target, "/")[0] == 200, every=POLL)
    res["wake_s"] = None if took is None else round(time.monotonic() - t2, 3)
    return res


def batch_scale(out: Path, args: argparse.Namespace) -> Json:
    """--scale-apps apps on each platform (the ones before counted), all answering; paas's and
    piku's memory; code-only redeploys and config changes of the bench app with them all up
    (alternating, as the batches above); then paas's ps:scale web=--scale-web, back, and the
    wake from web=0 (--scale-runs times)."""
    res: Json = {"apps": args.scale_apps, "deploys": {}, "answering": {}}
    for p in both():
        res["deploys"][p.name] = fill_to(out, p, args.scale_apps, at_once=4)
    time.sleep(args.settle)
    st = load_state(out)
    for p in both():
        res["answering"][p.name] = all_answering(p, apps_of(st, p.name))
    res["memory"] = {p.name: memory(p) for p in both()}
    runs = argparse.Namespace(redeploy=args.scale_runs, config=args.scale_runs)
    res["redeploy"] = batch_redeploy(out, runs)
    res["config"] = batch_config(out, runs)
    paas = Paas()
    app = load_state(out)["bench"]["paas"]["app"]
    res["scale"] = []
    for _ in range(args.scale_runs):
        res["scale"].append(scale_once(paas, app, args.scale_web))
        print(f"scale: {res['scale'][-1]}", flush=True)
        time.sleep(2)
    res["scale_web"] = args.scale_web
    return res


BATCHES = {"cold": batch_cold, "redeploy": batch_redeploy, "config": batch_config,
           "wrk": batch_wrk, "start": batch_start, "mem1": batch_mem, "many": batch_many,
           "scale": batch_scale}


def run_batch(names: str, out: Path, args: argparse.Namespace) -> None:
    for name in names.split(","):
        run_one(name, out, args)
        if name == "cold":
            cleanup(out, "cold_apps")


def run_one(name: str, out: Path, args: argparse.Namespace) -> None:
    t = time.time()
    l0 = loadavg()
    res = BATCHES[name](out, args)
    doc = {"batch": name, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)),
           "seconds": round(time.time() - t, 1), "load_start": l0, "load_end": loadavg(),
           "result": res}
    (out / f"{name}.json").write_text(json.dumps(doc, indent=1))


def locked(name: str, out: Path, argv_rest: list[str]) -> None:
    t = time.time()
    print(f"== {name}: waiting for {LOCK} (load {loadavg()})", flush=True)
    subprocess.run(["flock", LOCK, sys.executable, __file__, "batch", name, "--out", str(out),
                    *argv_rest], check=True)
    print(f"== {name}: done ({time.time() - t:.0f} s incl. lock wait)", flush=True)


def cleanup(out: Path, key: str) -> None:
    st = load_state(out)
    for name, app in st.get(key, []):
        PLATFORMS[name]().destroy(app)
    st[key] = []
    save_state(out, st)


# ---------------------------------------------------------------- report

def med(xs: list[Any]) -> str:
    xs = [x for x in xs if x is not None]
    if not xs:
        return "-"
    return f"{statistics.median(xs):.2f} ({min(xs):.2f}-{max(xs):.2f})"


def medv(xs: list[Any]) -> float | None:
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}" if a is not None and b else "-"


def load_batch(out: Path, name: str) -> Json | None:
    p = out / f"{name}.json"
    return json.loads(p.read_text()) if p.exists() else None


def report_timed(out: Path) -> None:
    titles = (("cold", "Cold deploy (new app), push start -> first 200 with the body, s"),
              ("redeploy", "Code-only redeploy, push start -> first 200 with the new body, s"),
              ("config", "Config change, command start -> first 200 with the new value, s"))
    for n, title in titles:
        d = load_batch(out, n)
        if not d:
            print(f"\n### {title}\nnot measured\n")
            continue
        r = d["result"]
        print(f"\n### {title}\n(batch {d['started']}, {d['seconds']} s, "
              f"load {d['load_start']} -> {d['load_end']})\n")
        print("| | paas | piku | paas/piku | n |\n|---|---|---|---|---|")
        for key, lab in (("live_s", "to first good 200"), ("cmd_s", "push/command returns")):
            a, b = ([x[key] for x in r[p]] for p in ("paas", "piku"))
            print(f"| {lab} | {med(a)} | {med(b)} | {ratio(medv(a), medv(b))} "
                  f"| {len(a)}/{len(b)} |")
        if n != "cold":
            report_failures(r)
        phases(r)


def report_failures(r: Json) -> None:
    for key, lab in (("non200", "non-200 responses"), ("non200_s", "non-200 time, s")):
        a, b = ([x[key] for x in r[p]] for p in ("paas", "piku"))
        print(f"| {lab} | {med(a)} | {med(b)} | | |")
    for p in ("paas", "piku"):
        st: dict[str, int] = {}
        for x in r[p]:
            for run in x["runs"]:
                for k, v in run["status"].items():
                    st[k] = st.get(k, 0) + v
        print(f"\n{p}: non-200 by status over all runs {st or 'none'}; old body after new: "
              f"{sum(x['old_after_new'] for x in r[p])}; failed (no good 200): "
              f"{sum(1 for x in r[p] if x['live_s'] is None)}; "
              f"rc!=0: {sum(1 for x in r[p] if x['rc'])}")


def report_wrk(out: Path) -> None:
    d = load_batch(out, "wrk")
    if not d:
        return
    r = d["result"]
    print(f"\n### Throughput, wrk -t2 -c20 (batch {d['started']}, "
          f"load {d['load_start']} -> {d['load_end']})\n")
    print("| | req/s median (min-max) | p99 ms median (min-max) | router/direct req/s | n |\n"
          "|---|---|---|---|---|")
    for k in ("paas_router", "paas_direct", "piku_router", "piku_direct", "bare_netns"):
        xs = r.get(k, [])
        rr = ""
        if k.endswith("router"):
            direct = r.get(k.split("_")[0] + "_direct", [])
            rr = ratio(medv([x["rps"] for x in xs]), medv([x["rps"] for x in direct]))
        print(f"| {k} | {med([x['rps'] for x in xs])} | {med([x['p99_ms'] for x in xs])} | {rr} "
              f"| {len(xs)} |")
    bad = [(k, x["non2xx"], x["socket_errors"]) for k, xs in r.items() for x in xs
           if x["non2xx"] or x["socket_errors"]]
    print(f"errors: {bad or 'none'}")


def report_memory(out: Path) -> None:
    for n, lab in (("mem1", "Idle memory, one app"), ("many", "Idle memory, many apps")):
        d = load_batch(out, n)
        if not d:
            continue
        m = d["result"] if n == "mem1" else d["result"]["memory"]
        print(f"\n### {lab} (batch {d['started']}, load {d['load_start']})\n")
        print("| | paas RSS / PSS MiB (procs) | piku RSS / PSS MiB (procs) |\n|---|---|---|")
        for part in ("core", "per_app_platform", "app"):
            a, b = m["paas"][part], m["piku"][part]
            print(f"| {part} | {a['rss_mib']} / {a['pss_mib']} ({a['n']}) "
                  f"| {b['rss_mib']} / {b['pss_mib']} ({b['n']}) |")
        for p in ("paas", "piku"):
            print(f"\n{p} core processes:")
            for x in m[p]["core"]["procs"]:
                print(f"  {x['rss_kb'] / 1024:7.1f} MiB rss {x['pss_kb'] / 1024:7.1f} pss  "
                      f"{x['cmd'][:110]}")


PHASE_MARKS = {"paas": ["Building ", "Installing dependencies", "Layers", "Build succeeded",
                        "Releasing v", "Released v"],
               "piku": ["Deploying app", "Creating virtualenv", "Running pip",
                        "generating self-signed", "spawning"]}


def phases(r: Json) -> None:
    for p, marks in PHASE_MARKS.items():
        cols = []
        for m in marks:
            ts = [next((t for t, line in x["output"] if m in line), None) for x in r[p]]
            found = [t for t in ts if t is not None]
            if found:
                cols.append(f"{m.strip()} {statistics.median(found):.2f}")
        cmd = statistics.median([x["cmd_s"] for x in r[p]])
        live = medv([x["live_s"] for x in r[p]])
        ds = [x["dyno_started_s"] for x in r[p] if "dyno_started_s" in x]
        extra = f"; new web dyno started {statistics.median(ds):.2f}" if ds else ""
        print(f"{p} output marks (median s after start): " + "; ".join(cols) + extra
              + f"; command returns {cmd:.2f}; live {live}")
    logged = [x["log_marks"] for x in r["paas"] if x.get("log_marks")]
    if logged:
        cols = [f"{m} {statistics.median(v):.2f}" for m in LOG_MARKS
                if (v := [x[m] for x in logged if m in x])]
        print("paas platform log, as shipped to the log stream (median s after start): "
              + "; ".join(cols))


def report_start(out: Path) -> None:
    d = load_batch(out, "start")
    if not d:
        return
    r = d["result"]
    print(f"\n### Dyno start (batch {d['started']}, load {d['load_start']})\n")
    if w := load_batch(out, "wrk"):
        boots = [x.get("gunicorn_boot_s") for x in w["result"].get("bare_netns", [])]
        print(f"gunicorn's own boot (bare netns, spawn -> first 200): {med(boots)} s")
    print(f"`runc run /bin/true`: {med(r['runc_true_s'])} s; "
          f"`paas run -- true` (one-off dyno, command start -> exit): "
          f"{med(r['paas_run_true_s'])} s; ratio "
          f"{ratio(medv(r['paas_run_true_s']), medv(r['runc_true_s']))}")


def summary(out: Path) -> list[Json]:
    """The rows of docs/PERFORMANCE.md's table: figure, paas, piku, paas/piku, target."""
    rows: list[Json] = []

    def row(figure: str, paas: float | None, piku: float | None, target: str,
            unit: str, extra: Json | None = None) -> None:
        paas, piku = (None if v is None else round(v, 3) for v in (paas, piku))
        rows.append({"figure": figure, "paas": paas, "piku": piku, "unit": unit,
                     "ratio": round(paas / piku, 2) if paas is not None and piku else None,
                     "target": target, **(extra or {})})

    for n, figure, target in (("cold", "cold deploy, push -> first 200", "<= 0.5"),
                              ("redeploy", "code-only redeploy -> new body served",
                               "<= 0.4, 0 failed requests"),
                              ("config", "config change -> new value served",
                               "<= 0.3, 0 failed requests")):
        if d := load_batch(out, n):
            r = d["result"]
            fails = {p: sum(x["non200"] for x in r[p]) for p in ("paas", "piku")}
            row(figure, medv([x["live_s"] for x in r["paas"]]),
                medv([x["live_s"] for x in r["piku"]]), target, "s",
                {"failed_requests": fails} if n != "cold" else None)
    if d := load_batch(out, "wrk"):
        r = d["result"]
        rps = {k: medv([x["rps"] for x in r.get(k, [])]) for k in
               ("paas_router", "paas_direct", "piku_router", "piku_direct", "bare_netns")}
        row("router throughput (wrk -t2 -c20)", rps["paas_router"], rps["piku_router"],
            ">= 1.0", "req/s")
        bare = rps["bare_netns"]
        row("the app straight to the dyno (piku: gunicorn on loopback)", rps["paas_direct"],
            rps["piku_direct"], ">= 0.95 of bare netns+veth+bridge, >= 0.8 of loopback", "req/s",
            {"bare_netns": bare,
             "of_bare": round(rps["paas_direct"] / bare, 2) if rps["paas_direct"] and bare
             else None})
    if d := load_batch(out, "mem1"):
        m = d["result"]
        row("platform's own memory, idle, PSS", m["paas"]["core"]["pss_mib"],
            m["piku"]["core"]["pss_mib"], "<= 120 MiB PSS", "MiB",
            {"rss": [m["paas"]["core"]["rss_mib"], m["piku"]["core"]["rss_mib"]]})
    if d := load_batch(out, "many"):
        m, apps = d["result"]["memory"], d["result"].get("apps", 10)
        per = {p: m[p]["per_app_platform"] for p in ("paas", "piku")}
        row(f"memory per app beyond the app, PSS ({apps} apps)",
            round(per["paas"]["pss_mib"] / apps, 2), round(per["piku"]["pss_mib"] / apps, 2),
            "<= 2 MiB PSS", "MiB",
            {"rss": [round(per[p]["rss_mib"] / apps, 2) for p in ("paas", "piku")],
             "core_pss": [m[p]["core"]["pss_mib"] for p in ("paas", "piku")]})
    if d := load_batch(out, "many"):
        m, apps = d["result"]["memory"], d["result"].get("apps", 10)
        row(f"platform's own memory, PSS, {apps} apps", m["paas"]["core"]["pss_mib"],
            m["piku"]["core"]["pss_mib"], "<= 120 MiB PSS", "MiB",
            {"rss": [m[p]["core"]["rss_mib"] for p in ("paas", "piku")]})
    if d := load_batch(out, "scale"):
        scale_rows(d["result"], row)
    if d := load_batch(out, "start"):
        r = d["result"]
        runc_true = medv(r["runc_true_s"])
        paas_true = medv(r["paas_run_true_s"])
        row("one-off dyno `paas run -- true`, start -> exit (piku: none)", paas_true, None,
            "(`runc run /bin/true` is the floor)", "s",
            {"runc_true": runc_true,
             "of_runc": round(paas_true / runc_true, 1) if paas_true and runc_true else None})
    return rows


def scale_rows(r: Json, row: Any) -> None:
    """The rows of the scale batch: N apps answering, deploys with N apps up, memory with N
    apps, paas's ps:scale and wake."""
    apps = r["apps"]
    ans = r["answering"]
    row(f"{apps} apps on one host, answering through the router", ans["paas"]["answering"],
        ans["piku"]["answering"], f"all {apps}", "apps")
    for n, figure, target in (("redeploy", "code-only redeploy -> new body served",
                               "<= 0.4, 0 failed requests"),
                              ("config", "config change -> new value served",
                               "<= 0.3, 0 failed requests")):
        x = r[n]
        fails = {p: sum(y["non200"] for y in x[p]) for p in ("paas", "piku")}
        row(f"{figure}, {apps} apps up", medv([y["live_s"] for y in x["paas"]]),
            medv([y["live_s"] for y in x["piku"]]), target, "s", {"failed_requests": fails})
    m = r["memory"]
    row(f"platform's own memory, PSS, {apps} apps", m["paas"]["core"]["pss_mib"],
        m["piku"]["core"]["pss_mib"], "<= 120 MiB PSS", "MiB",
        {"rss": [m[p]["core"]["rss_mib"] for p in ("paas", "piku")]})
    per = {p: m[p]["per_app_platform"] for p in ("paas", "piku")}
    row(f"memory per app beyond the app, PSS ({apps} apps)",
        round(per["paas"]["pss_mib"] / apps, 2), round(per["piku"]["pss_mib"] / apps, 2),
        "<= 2 MiB PSS", "MiB", {"rss": [round(per[p]["rss_mib"] / apps, 2)
                                         for p in ("paas", "piku")]})
    web, runs = r["scale_web"], r["scale"]
    fails = sum(y["non200"] for y in runs)
    row(f"`paas ps:scale web={web}` -> {web} dynos up ({apps} apps up)",
        medv([y["up_s"] for y in runs]), None, "<= 5 s", "s",
        {"failed_requests": {"paas": fails, "piku": None}})
    row(f"`paas ps:scale web=1` from {web} -> one dyno left", medv([y["down_s"] for y in runs]),
        None, "-", "s")
    row("wake: `paas ps:scale web=1` from web=0 -> first 200", medv([y["wake_s"] for y in runs]),
        None, "-", "s")


def report_scale(out: Path) -> None:
    d = load_batch(out, "scale")
    if not d:
        return
    r = d["result"]
    print(f"\n### {r['apps']} apps (batch {d['started']}, {d['seconds']} s, "
          f"load {d['load_start']} -> {d['load_end']})\n")
    for p in ("paas", "piku"):
        deploys = r["deploys"][p]
        print(f"{p}: {len(deploys)} apps added (not timed: 4 pushes at a time), "
              f"{sum(not x['ok'] for x in deploys)} failed, median "
              f"{med([x['s'] for x in deploys])} s each; answering {r['answering'][p]}")
    print("\n| with all apps up | paas | piku | paas/piku |\n|---|---|---|---|")
    for n in ("redeploy", "config"):
        a, b = ([x["live_s"] for x in r[n][q]] for q in ("paas", "piku"))
        na, nb = (sum(x["non200"] for x in r[n][q]) for q in ("paas", "piku"))
        print(f"| {n} | {med(a)}, {na} non-200 | {med(b)}, {nb} non-200 "
              f"| {ratio(medv(a), medv(b))} |")
    for part in ("core", "per_app_platform", "app"):
        a, b = r["memory"]["paas"][part], r["memory"]["piku"][part]
        print(f"| memory {part} RSS / PSS MiB (procs) | {a['rss_mib']} / {a['pss_mib']} "
              f"({a['n']}) | {b['rss_mib']} / {b['pss_mib']} ({b['n']}) | |")
    print(f"\npaas ps:scale web={r['scale_web']} runs: {r['scale']}")


def fmt(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:,.0f}" if v >= 100 else f"{v:.2f}"


def report_summary(out: Path) -> None:
    rows = summary(out)
    print("\n### Summary (medians)\n\n| figure | paas | piku | paas/piku | target |\n"
          "|---|---|---|---|---|")
    for r in rows:
        paas, piku = (fmt(v) + ("" if v is None else f" {r['unit']}")
                      for v in (r["paas"], r["piku"]))
        if "rss" in r:
            paas += f" ({fmt(r['rss'][0])})"
            piku += f" ({fmt(r['rss'][1])})"
        if "bare_netns" in r:
            paas += f" (bare netns {fmt(r['bare_netns'])}: {fmt(r['of_bare'])} of it)"
        if "runc_true" in r:
            paas += f" (`runc run /bin/true` {fmt(r['runc_true'])} s: {fmt(r['of_runc'])}x)"
        if "failed_requests" in r:
            f = r["failed_requests"]
            paas += f", {f['paas']} failed"
            piku += f", {f['piku']} failed"
        print(f"| {r['figure']} | {paas} | {piku} | {fmt(r['ratio'])} | {r['target']} |")
    print()
    for r in rows:  # one JSON line a figure
        print(json.dumps({"bench": "peers", **r}))


def report(out: Path) -> None:
    report_timed(out)
    report_wrk(out)
    report_start(out)
    report_memory(out)
    report_scale(out)
    report_summary(out)


# ---------------------------------------------------------------- main

def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("cmd", choices=["run", "batch", "report", "cleanup"])
    ap.add_argument("name", nargs="?")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--cold", type=int, default=5)
    ap.add_argument("--redeploy", type=int, default=7)
    ap.add_argument("--config", type=int, default=7)
    ap.add_argument("--wrk-rounds", type=int, default=3)
    ap.add_argument("--wrk-seconds", type=int, default=10)
    ap.add_argument("--starts", type=int, default=5)
    ap.add_argument("--many", type=int, default=10)
    ap.add_argument("--settle", type=float, default=30.0)
    ap.add_argument("--scale-apps", type=int, default=50)
    ap.add_argument("--scale-runs", type=int, default=3)
    ap.add_argument("--scale-web", type=int, default=10)
    ap.add_argument("--only", default="cold,redeploy,config,wrk,start,mem1,many,scale")
    ap.add_argument("--groups", default="cold,redeploy,config;wrk,start,mem1,many;scale",
                    help="batches per lock hold")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    WORK.mkdir(parents=True, exist_ok=True)
    rest = [f"--{k.replace('_', '-')}={getattr(args, k)}" for k in
            ("cold", "redeploy", "config", "wrk_rounds", "wrk_seconds", "starts", "many",
             "settle", "scale_apps", "scale_runs", "scale_web")]
    if args.cmd == "batch":
        run_batch(args.name, args.out, args)
    elif args.cmd == "report":
        report(args.out)
    elif args.cmd == "cleanup":
        cleanup(args.out, "cold_apps")
        cleanup(args.out, "many_apps")
        cleanup(args.out, "scale_apps")
        for name, bench in load_state(args.out).get("bench", {}).items():
            PLATFORMS[name]().destroy(bench["app"])
    else:
        # timed batches in two lock holds (a few minutes each); --groups to change
        ensure_bench(args.out)
        only = args.only.split(",")
        for group in args.groups.split(";"):
            names = [n for n in group.split(",") if n in only]
            if names:
                locked(",".join(names), args.out, rest)
        report(args.out)


if __name__ == "__main__":
    main()
