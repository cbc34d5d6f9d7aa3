"""The stages of a code-only redeploy and of a config change, from the platform's own
timestamps: the database's build, release and dyno rows, and the Redis ids (milliseconds) of
the build stream, the app log (the agent's `paas[web.1]` lines) and the router's log of applied
route changes (`streams.route_changes`). `python -m bench.deploy --stages` runs it; it prints
ONE JSON line of medians (seconds), with each run's figures.

Stages of a redeploy, each from the end of the one before:
    receive_queue   push start → the worker took the build (push, pack check, build row, queue)
    build           the worker took it → its release was created
    to_start        release created → the agent starts the new dyno (it learned the desired state)
    start_to_listen the agent starts it → the agent knows it listens (runc start + app boot)
    listen_to_promoted, promoted_to_routed, routed_to_old_stopped (SIGTERM, grace, exit)
and, seen by a client polling the router every 20 ms: `served` (push → the new body) and
`routed_to_served`. Without the router's log (before it existed) routed_to_old_stopped counts
from `served`.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import sqlite3
import statistics
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from paas import streams
from tests.platform import Platform, commit_all, git

APP_DIR = Path(__file__).parent / "apps" / "flask-gunicorn"
APP = "stages"
POLL = 0.02


def stream_time(entry_id: str) -> float:
    return int(entry_id.split("-")[0]) / 1000


@dataclass
class Watcher:
    """Polls the router every 20 ms with a new connection: when `path` first answers `text`,
    and every answer that was not a 200."""

    platform: Platform
    path: str
    text: str
    seen_at: float | None = None
    sent: int = 0
    failed: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.is_set():
            self.sent += 1
            try:
                status, body = self.request()
                if status != 200:
                    self.failed += 1
                elif self.seen_at is None and body == self.text:
                    self.seen_at = time.time()
            except (OSError, http.client.HTTPException):
                self.failed += 1
            time.sleep(POLL)

    def request(self) -> tuple[int, str]:
        """One GET on a new connection (http.client: an httpx client per request costs tens
        of milliseconds of CPU, more than the stages measured)."""
        connection = http.client.HTTPConnection("127.0.0.1", self.platform.router_port,
                                                timeout=10)
        try:
            connection.request("GET", self.path, headers={"Host": f"{APP}.localhost"})
            response = connection.getresponse()
            return response.status, response.read().decode(errors="replace")
        finally:
            connection.close()

    def wait(self, timeout: float = 120) -> float:
        deadline = time.monotonic() + timeout
        while self.seen_at is None:
            if time.monotonic() > deadline:
                raise SystemExit(f"{APP} never served {self.text!r} on {self.path}")
            time.sleep(POLL)
        return self.seen_at


class Stamps:
    """The platform's own records of one app."""

    def __init__(self, platform: Platform) -> None:
        self.home = platform.home
        self.redis = redis.Redis(unix_socket_path=str(self.home / "redis" / "redis.sock"),
                                 decode_responses=True)

    def query(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        with sqlite3.connect(f"file:{self.home / 'paas.db'}?mode=ro", uri=True) as db:
            return db.execute(sql, args).fetchall()

    def latest_build(self) -> tuple[str, float, float]:
        (build_id, created, started), = self.query(
            "select b.id, b.created_at, b.started_at from builds b join apps a "
            "on a.id = b.app_id where a.name = ? order by b.created_at desc limit 1", APP)
        return build_id, created, started

    def release(self, build_id: str | None = None) -> tuple[int, float]:
        if build_id:
            rows = self.query("select version, created_at from releases where build_id = ?",
                              build_id)
        else:
            rows = self.query("select r.version, r.created_at from releases r join apps a "
                              "on a.id = r.app_id where a.name = ? order by r.version desc "
                              "limit 1", APP)
        return rows[0]

    def released_at(self, build_id: str) -> float | None:
        for entry_id, entry in streams.history(self.redis, streams.build_stream(build_id)):
            if isinstance(entry, streams.BuildEnd) and entry.ok:
                return stream_time(entry_id)
        return None

    def dyno_lines(self, since: float) -> list[tuple[float, str]]:
        return [(stream_time(i), line.text)
                for i, line in streams.history(self.redis, streams.app_log(APP))
                if line.source == "paas[web.1]" and stream_time(i) >= since]

    def routed_at(self, since: float) -> float | None:
        """When the router applied a change of the app's route, from `since` on (None: this
        platform keeps no log of applied route changes)."""
        log = getattr(streams, "route_changes", None)
        if log is None:
            return None
        for entry_id, entry in streams.history(self.redis, log()):
            if stream_time(entry_id) >= since and APP in entry.apps:
                return stream_time(entry_id)
        return None


def first(lines: list[tuple[float, str]], text: str, after: float) -> float | None:
    return next((t for t, line in lines if text in line and t >= after), None)


def span(start: float | None, end: float | None) -> float | None:
    return round(end - start, 3) if start is not None and end is not None else None


def wait_old_stopped(stamps: Stamps, release_at: float, timeout: float = 30) -> dict[str, Any]:
    """The agent's lines about web.1 since the release: the new dyno's start and boot, the
    old one's SIGTERM and exit."""
    deadline = time.monotonic() + timeout
    while True:
        lines = stamps.dyno_lines(release_at)
        start = first(lines, "Starting process", release_at)
        up = first(lines, "State changed from starting to up", start or release_at)
        term = first(lines, "Stopping all processes with SIGTERM", up or release_at)
        stopped = first(lines, "Process exited with status", term or release_at)
        if stopped is not None or time.monotonic() > deadline:
            return {"start": start, "up": up, "sigterm": term, "stopped": stopped}
        time.sleep(0.1)


def watched(platform: Platform, path: str, text: str) -> tuple[Watcher, threading.Thread]:
    watcher = Watcher(platform, path, text)
    thread = threading.Thread(target=watcher.run, daemon=True)
    thread.start()
    return watcher, thread


def redeploy(platform: Platform, stamps: Stamps, repo: Path, n: int) -> dict[str, Any]:
    body = f"python/flask redeploy {n}"
    hello = repo / "hello.py"
    hello.write_text(re.sub(r'BODY = ".*"', f'BODY = "{body}"', hello.read_text()))
    commit_all(repo, f"redeploy {n}")
    watcher, thread = watched(platform, "/", body)
    pushed = time.time()
    git(repo, "push", "-q", platform.remote_url(APP), "main")
    served = watcher.wait()
    build_id, _created, started = stamps.latest_build()
    _version, release_at = stamps.release(build_id)
    released = stamps.released_at(build_id)
    agent = wait_old_stopped(stamps, release_at)
    routed = stamps.routed_at(agent["up"] or release_at)
    watcher.stop.set()
    thread.join()
    return {"receive_queue": span(pushed, started), "build": span(started, release_at),
            "to_start": span(release_at, agent["start"]),
            "start_to_listen": span(agent["start"], agent["up"]),
            "listen_to_promoted": span(agent["up"], released),
            "promoted_to_routed": span(released, routed),
            "routed_to_old_stopped": span(routed or served, agent["stopped"]),
            "routed_to_served": span(routed, served),
            "served": span(pushed, served), "requests": watcher.sent,
            "failed_requests": watcher.failed}


def config_change(platform: Platform, stamps: Stamps, n: int) -> dict[str, Any]:
    value = f"v{n}"
    watcher, thread = watched(platform, "/PERF_VAL", value)
    asked = time.time()
    platform.paas("config:set", f"PERF_VAL={value}", "-a", APP)
    answered = time.time()
    served = watcher.wait()
    _version, release_at = stamps.release()
    agent = wait_old_stopped(stamps, release_at)
    routed = stamps.routed_at(agent["up"] or release_at)
    watcher.stop.set()
    thread.join()
    return {"command": span(asked, answered), "to_start": span(release_at, agent["start"]),
            "start_to_listen": span(agent["start"], agent["up"]),
            "listen_to_routed": span(agent["up"], routed),
            "routed_to_old_stopped": span(routed or served, agent["stopped"]),
            "routed_to_served": span(routed, served),
            "served": span(asked, served), "requests": watcher.sent,
            "failed_requests": watcher.failed}


def medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name in runs[0]:
        values = [run[name] for run in runs if run[name] is not None]
        if name in ("requests", "failed_requests"):
            result[name] = sum(values)
        else:
            result[name] = round(statistics.median(values), 3) if values else None
    return result


def app_repo(tmp: Path) -> Path:
    repo = tmp / "app"
    shutil.copytree(APP_DIR, repo)
    git(repo, "init", "-q", "-b", "main")
    commit_all(repo, "initial")
    return repo


def main(runs: int) -> None:
    # The agent's interval as installed (tests/platform.py sets a faster one for tests).
    platform = Platform.create(PAAS_AGENT_INTERVAL=os.environ.get("PAAS_AGENT_INTERVAL", "1"))
    try:
        platform.up()
        with tempfile.TemporaryDirectory(prefix="paas-stages-") as tmp:
            repo = app_repo(Path(tmp))
            platform.paas("apps:create", APP)
            platform.paas("config:set", "PERF_VAL=v0", "-a", APP)
            git(repo, "push", "-q", platform.remote_url(APP), "main")
            platform.wait_for(APP, "python/flask", timeout=300)
            stamps = Stamps(platform)
            deploys = [redeploy(platform, stamps, repo, n) for n in range(1, runs + 1)]
            configs = [config_change(platform, stamps, n) for n in range(1, runs + 1)]
    except subprocess.CalledProcessError as error:
        raise SystemExit(f"{error}\n{platform.output()}") from None
    finally:
        platform.down()
    print(json.dumps({"bench": "deploy-stages", "runs": runs,
                      "agent_interval": float(platform.env["PAAS_AGENT_INTERVAL"]),
                      "redeploy": medians(deploys), "config": medians(configs),
                      "redeploy_runs": deploys, "config_runs": configs}))
