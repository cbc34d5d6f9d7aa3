"""The agent's reconcile loop against real runc dynos and a real Redis; the API's side is the
desired state handed to it and the reports it receives."""

from __future__ import annotations

import itertools
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis

from paas.logs import RedisEvents
from paas.runtime import Runtime
from paas.runtime.agent import Agent, DynoKey
from paas.runtime.network import bridge_name, link_exists
from paas.scheduler import ApiControlPlane, reconcile_all
from paas.settings import Settings
from paas.slugs.layers import LayerStore
from paas.wire import (
    DYNO_TRANSITIONS,
    AppPolicy,
    DesiredDyno,
    DesiredState,
    DynoState,
    HealthCheck,
    NodeInfo,
    NodeReport,
)
from tests.platform import free_subnet

SLOT = 241  # far above the slots the session's test platform gives its apps
APP = "agentapp"
PORT = 5000
WEB = "exec /usr/bin/python3 -m http.server $PORT --bind 0.0.0.0"
# A SIGTERM handler: PID 1 of a container ignores TERM without one.
WORKER = ("exec /usr/bin/python3 -c 'import signal, time; "
          "signal.signal(signal.SIGTERM, lambda *a: exit(0)); time.sleep(600)'")
STUBBORN = "exec sleep 600"  # PID 1 without a handler: SIGTERM does nothing
NODE = "agent-test-node"
NODE_PATH = f"/v1/internal/nodes/{NODE}"


@dataclass
class DesiredApi:
    """The API as the agent sees it: the desired dynos out, the reports in."""

    dynos: list[DesiredDyno] = field(default_factory=list)
    reports: list[list[dict[str, Any]]] = field(default_factory=list)
    failed_starts: list[dict[str, Any]] = field(default_factory=list)
    nodes: list[NodeInfo] = field(default_factory=list)

    def get(self, path: str) -> dict[str, Any]:
        assert path == f"{NODE_PATH}/desired"
        assert self.nodes, "the agent asked for its dynos before it registered"
        return DesiredState(dynos=tuple(self.dynos), apps={APP: AppPolicy()}).to_json()

    def put(self, path: str, body: dict[str, Any]) -> None:
        if path == NODE_PATH:
            self.nodes.append(NodeInfo.from_json(body))
            return
        assert path == f"{NODE_PATH}/dynos"
        NodeReport.from_json(body)  # what the API would refuse, the test refuses
        self.reports.append(body["dynos"])
        self.failed_starts.extend(body.get("failed_starts") or [])

    def state(self, name: str) -> list[str]:
        """The reported states of the dynos called `name`, in the last report."""
        return [d["state"] for d in self.reports[-1] if f"{d['type']}.{d['index']}" == name]


@dataclass
class Harness:
    agent: Agent
    api: DesiredApi
    redis: redis.Redis
    layer: str
    registered: set[str] = field(default_factory=set)

    def reconcile(self) -> None:
        """One pass of the scheduler loop, against the fake API."""
        reconcile_all(self.agent, ApiControlPlane(self.api), self.registered)  # type: ignore[arg-type]

    def dyno(self, process_type: str, index: int, command: str,
             checks: list[dict[str, Any]] | None = None, oneoff: bool = False) -> DesiredDyno:
        return DesiredDyno(
            app=APP, slot=SLOT, uid=20000 + SLOT, release=1, type=process_type, index=index,
            command=("/bin/sh", "-c", command), env={"PORT": str(PORT)}, layers=(self.layer,),
            memory_mb=128, cpu_shares=0, pids=64, disk_mb=0, port=PORT, size="basic",
            generation="basic:0", node=NODE, oneoff=oneoff,
            healthchecks=tuple(HealthCheck.from_json(c) for c in checks or ()))

    def until(self, check: Callable[[], Any], timeout: float = 30) -> Any:
        """Reconciles until check() is true."""
        deadline = time.monotonic() + timeout
        while True:
            self.reconcile()
            if result := check():
                return result
            assert time.monotonic() < deadline, f"never happened: {self.api.reports[-1]}"
            time.sleep(0.1)

    def log_lines(self) -> list[str]:
        return [fields["line"] for _, fields in self.redis.xrange(f"logs:{APP}")]


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    sock = tmp_path / "redis.sock"
    server = subprocess.Popen(
        ["redis-server", "--port", "0", "--unixsocket", str(sock), "--save", "",
         "--appendonly", "no", "--dir", str(tmp_path)], stdout=subprocess.DEVNULL)
    base = Path(tempfile.mkdtemp(prefix="paas-agent-", dir="/tmp"))
    settings = Settings(home=base / "home", redis_url_override=f"unix://{sock}",
                        dyno_subnet=free_subnet(), node_name=NODE,
                        stop_grace=30, boot_timeout=60)
    source = base / "layer"
    source.mkdir()
    (source / "index.html").write_text("hello\n")
    store = LayerStore(settings)
    runtime = Runtime(settings)
    deadline = time.monotonic() + 10
    while not sock.exists():
        assert time.monotonic() < deadline, "redis did not start"
        time.sleep(0.02)
    client = redis.Redis.from_url(f"unix://{sock}", decode_responses=True)
    agent = Agent(settings, runtime, store, RedisEvents(client))
    try:
        yield Harness(agent, DesiredApi(), client, store.add_dir(source))
    finally:
        runtime.teardown()
        agent.shutdown(cancel=True)
        server.terminate()
        server.wait(10)
        shutil.rmtree(base)


def test_a_web_dyno_scaled_down_then_up_before_it_stopped_serves_on(harness: Harness) -> None:
    web1, web2 = harness.dyno("web", 1, WEB), harness.dyno("web", 2, WEB)
    harness.api.dynos = [web1, web2]
    harness.until(lambda: harness.api.state("web.1") == ["up"]
                  and harness.api.state("web.2") == ["up"])
    ids = {d["id"] for d in harness.api.reports[-1]}

    harness.api.dynos = [web1]  # scaled down: web.2 leaves the routes first...
    harness.reconcile()
    assert harness.api.state("web.2") == ["down"]
    harness.api.dynos = [web1, web2]  # ...and is wanted again before it was stopped
    harness.reconcile()
    harness.reconcile()

    assert harness.api.state("web.2") == ["up"]
    assert {d["id"] for d in harness.api.reports[-1]} == ids


def test_a_stop_that_ends_while_the_loop_runs_is_not_stopped_again(
        harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    harness.api.dynos = [harness.dyno("worker", 1, WORKER)]
    harness.until(lambda: harness.api.state("worker.1") == ["up"])
    harness.api.dynos = []
    harness.reconcile()  # worker.1 is no longer wanted: its stop begins
    assert harness.agent.stops.under_way()

    real = harness.agent.runtime.list_dynos
    calls = 0

    def listing_then_stop_ends() -> list[Any]:
        """The loop's listing still has the dyno; its stop ends right after."""
        nonlocal calls
        calls += 1
        listed = real()
        if calls == 1:
            deadline = time.monotonic() + 30
            while harness.agent.stops.under_way():
                assert time.monotonic() < deadline
                time.sleep(0.02)
        return listed

    monkeypatch.setattr(harness.agent.runtime, "list_dynos", listing_then_stop_ends)
    harness.reconcile()
    harness.agent.stops.pool.submit(lambda: None).result()  # any second stop has begun
    time.sleep(0.5)
    lines = harness.log_lines()
    assert lines.count("Stopping all processes with SIGTERM") == 1, lines
    monkeypatch.undo()
    harness.until(lambda: harness.api.reports[-1] == [] and not harness.agent.stops.under_way())
    assert harness.agent.notes.ids() == set()


def test_the_notes_of_a_dyno_removed_behind_the_agents_back_are_forgotten(
        harness: Harness) -> None:
    harness.api.dynos = [harness.dyno("worker", 1, WORKER)]
    first = harness.until(lambda: harness.api.state("worker.1") == ["up"]
                          and harness.api.reports[-1][0]["id"])
    assert first in harness.agent.notes
    harness.agent.runtime.remove_dyno(first)
    harness.until(lambda: harness.api.state("worker.1") == ["up"])
    assert first not in harness.agent.notes
    assert len(harness.agent.notes) == 1


def test_the_bridge_goes_with_the_apps_last_dyno(harness: Harness) -> None:
    bridge = bridge_name(harness.agent.settings.install_id, SLOT)
    harness.api.dynos = [harness.dyno("worker", 1, WORKER)]
    harness.until(lambda: harness.api.state("worker.1") == ["up"])
    assert link_exists(bridge)
    assert harness.agent.runtime.remove_idle_bridges() == []  # in use: stays
    assert link_exists(bridge)

    harness.api.dynos = []  # the app was destroyed
    harness.until(lambda: harness.api.reports[-1] == [] and not harness.agent.stops.under_way())
    harness.reconcile()
    assert not link_exists(bridge)

    harness.api.dynos = [harness.dyno("worker", 1, WORKER)]  # a new app on the slot
    harness.until(lambda: harness.api.state("worker.1") == ["up"])
    assert link_exists(bridge)


def test_a_dyno_whose_bridge_is_refused_leaves_nothing_behind(harness: Harness) -> None:
    settings = harness.agent.settings
    # Another interface on the app's /24: the runtime refuses to make the bridge.
    other = f"pt{settings.install_id}x"
    network = settings.dyno_subnet.split(".")
    subprocess.run(["ip", "link", "add", other, "type", "bridge"], check=True)
    try:
        subprocess.run(["ip", "addr", "add", f"{network[0]}.{network[1]}.{SLOT}.250/24",
                        "dev", other], check=True)
        spec = harness.dyno("worker", 1, WORKER)
        harness.api.dynos = [spec]
        harness.reconcile()
        assert harness.api.reports[-1] == []
        assert "already used by" in harness.log_lines()[-1]
        # A taken network is no passing trouble: the API fails the release at once.
        [failed] = harness.api.failed_starts
        assert failed["permanent"] is True and "already used by" in failed["error"]
        assert harness.agent.runtime.list_dynos() == []
        assert [p.name for p in settings.dynos_dir.iterdir() if p.is_dir()] == []
    finally:
        subprocess.run(["ip", "link", "delete", other], check=False)


def test_stops_waiting_out_their_grace_do_not_hold_back_health_checks(
        harness: Harness) -> None:
    stubborn = [harness.dyno("stubborn", n, STUBBORN) for n in range(1, 9)]
    harness.api.dynos = stubborn
    harness.until(lambda: all(harness.api.state(f"stubborn.{n}") == ["up"]
                              for n in range(1, 9)))
    check = {"path": "/", "attempts": 3, "timeout": 5, "wait": 1}
    harness.api.dynos = [harness.dyno("web", 1, WEB, [check])]
    started = threading.Event()

    def web_up() -> bool:
        started.set()
        return harness.api.state("web.1") == ["up"]

    # The eight stops wait out the 30 s grace (SIGTERM does nothing to `sleep`)...
    harness.until(web_up, timeout=25)
    # ...and the web dyno's HTTP health check passed meanwhile.
    assert len(harness.agent.stops.under_way()) == 8


def test_every_dynos_reported_states_follow_the_dyno_state_table(harness: Harness) -> None:
    """A crash loop, one-offs that succeed and fail, a web dyno scaled down and stopped: each
    dyno's state, report after report, is the same or an allowed step (DYNO_TRANSITIONS)."""
    polite_web = ("exec /usr/bin/python3 -c 'import http.server as h, os, signal; "
                  "signal.signal(signal.SIGTERM, lambda *a: exit(0)); h.HTTPServer((\"\", "
                  "int(os.environ[\"PORT\"])), h.SimpleHTTPRequestHandler).serve_forever()'")
    harness.api.dynos = [harness.dyno("web", 1, polite_web), harness.dyno("crashy", 1, "exit 1"),
                         harness.dyno("run", 1, "exit 0", oneoff=True),
                         harness.dyno("run", 2, "exit 3", oneoff=True)]
    harness.until(lambda: harness.api.state("web.1") == ["up"]
                  and harness.agent.crashes.get(DynoKey(APP, 1, "crashy", 1)).count >= 3
                  and harness.api.state("run.1") == ["down"]
                  and harness.api.state("run.2") == ["crashed"])
    harness.api.dynos = harness.api.dynos[1:]  # web scaled down: down, then stopped
    harness.until(lambda: harness.api.state("web.1") == [])
    harness.api.dynos = []
    harness.until(lambda: harness.api.reports[-1] == [] and not harness.agent.stops.under_way())

    lives: dict[tuple[str, str], list[str]] = {}  # (name, id) -> reported states
    for report in harness.api.reports:
        for dyno in report:
            name = f"{dyno['type']}.{dyno['index']}"
            lives.setdefault((name, dyno["id"]), []).append(dyno["state"])
    for dyno, states in lives.items():
        for before, after in itertools.pairwise(states):
            assert after == before or after in DYNO_TRANSITIONS[DynoState(before)], (
                dyno, states)
    assert {s for states in lives.values() for s in states} == set(DynoState)
    (web,) = [states for (name, _), states in lives.items() if name == "web.1"]
    # Stopped by the platform, it is never reported crashed, even once it has exited.
    assert web[0] == "starting" and web[-1] == "down" and "crashed" not in web, web


@pytest.mark.parametrize(("code", "end"), [(3, "crashed"), (0, "down")])
def test_a_one_off_that_ends_while_the_loop_runs_is_reported_by_its_exit_code(
        harness: Harness, monkeypatch: pytest.MonkeyPatch, code: int, end: str) -> None:
    """Its exit is first seen by the report, and then it is no longer wanted (the API has
    its exit code): crashed (or down for exit 0) from then on, until it is gone."""
    harness.api.dynos = [harness.dyno("run", 1, f"sleep 2; exit {code}", oneoff=True)]
    harness.until(lambda: harness.api.state("run.1") == ["up"])
    real = harness.agent.runtime.list_dynos
    calls = 0

    def exits_between_the_loop_and_the_report() -> list[Any]:
        nonlocal calls
        calls += 1
        while calls == 2 and not any(d.state == "exited" for d in real()):
            time.sleep(0.05)
        return real()

    monkeypatch.setattr(harness.agent.runtime, "list_dynos", exits_between_the_loop_and_the_report)
    harness.reconcile()
    monkeypatch.undo()
    assert calls == 2 and harness.api.state("run.1") == [end]
    harness.api.dynos = []  # what the API does once it has a one-off's exit code
    harness.until(lambda: harness.api.reports[-1] == [] and not harness.agent.stops.under_way())
    states = [d["state"] for report in harness.api.reports for d in report]
    assert states[states.index(end):] == [end] * (len(states) - states.index(end)), states


def test_a_dyno_line_longer_than_a_log_entry_arrives_cut(harness: Harness) -> None:
    """Redis keeps 20,000 entries a stream: each holds at most 10 KB of one line."""
    harness.api.dynos = [harness.dyno(
        "worker", 1, f"python3 -c \"print('x' * 100000)\"; echo after; {WORKER}")]
    lines = harness.until(lambda: "after" in harness.log_lines() and harness.log_lines())
    (long,) = [line for line in lines if line.startswith("x")]
    assert long == "x" * 10240 + f" [line cut: {100000 - 10240} more bytes]"
    harness.api.dynos = []
    harness.until(lambda: harness.api.reports[-1] == [] and not harness.agent.stops.under_way())


def test_a_booting_web_dyno_wakes_the_agent_once_it_listens(harness: Harness) -> None:
    harness.api.dynos = [harness.dyno("web", 1, f"sleep 1; {WEB}")]
    harness.reconcile()  # starts it, and its port probe
    assert harness.api.state("web.1") == ["starting"]

    # No pass runs meanwhile: the probe itself tells the loop, and that one pass reports it up.
    assert harness.agent.wake.wait(30)
    harness.reconcile()

    assert harness.api.state("web.1") == ["up"]
    assert "State changed from starting to up" in harness.log_lines()
