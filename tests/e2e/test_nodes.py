"""Two nodes on one machine: the platform's agent (node-a) and a second agent started by the
test (node-b), with a runtime home and a dyno subnet of its own, beside one API and one router.
The API spreads an app's web dynos over both; when node-b's agent stops, its dynos start on
node-a after the node grace, and no request through the router fails meanwhile."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.platform import (
    ROOT,
    Platform,
    app_repo,
    git,
    hold_subnet,
    release_subnet,
    second_subnet,
)

pytestmark = pytest.mark.e2e

APP = "two-nodes"
FIRST, SECOND = "node-a", "node-b"
NODE_GRACE = 4.0
MAX_REQUESTS = 20000  # the load's bounds: whichever comes first
MAX_LOAD_SECONDS = 240.0


class SecondAgent:
    """`python -m paas.runtime.agent` as another node: the platform's PAAS_HOME (its API, service
    token, Redis and layer store), its own runtime home, node name and dyno subnet."""

    def __init__(self, platform: Platform, name: str) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="paas-e2e-node-"))
        self.base.chmod(0o711)
        self.subnet = second_subnet()
        hold_subnet(self.subnet)
        self.env = {**platform.env, "PAAS_NODE_NAME": name, "PAAS_DYNO_SUBNET": self.subnet,
                    "PAAS_RUNTIME_HOME": str(self.base / "runtime")}
        self.log_path = self.base / "agent.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "paas.runtime.agent"],
                                            env=self.env, cwd=ROOT, stdout=log,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(60)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")[-10000:]

    def remove(self) -> None:
        """Its dynos, network, cgroups and runc state (`Runtime.teardown_node`), then its home."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)
        script = ("from paas.runtime import Runtime; from paas.settings import load; "
                  "Runtime(load()).teardown_node()")
        subprocess.run([sys.executable, "-c", script], env=self.env, cwd=ROOT, check=False,
                       timeout=120)
        shutil.rmtree(self.base, ignore_errors=True)
        release_subnet(self.subnet)


class Load:
    """Sequential GETs through the router, bounded in count and time; each answer's dyno and
    when it came, each failure."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.answers: list[tuple[float, str]] = []  # (time.monotonic(), "web.3")
        self.failures: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        deadline = time.monotonic() + MAX_LOAD_SECONDS
        with httpx.Client(timeout=30) as client:
            while (not self.stop.is_set() and time.monotonic() < deadline
                   and len(self.answers) + len(self.failures) < MAX_REQUESTS):
                self.one(client)

    def one(self, client: httpx.Client) -> None:
        try:
            response = client.get(f"http://127.0.0.1:{self.platform.router_port}/",
                                  headers={"Host": f"{APP}.localhost"})
        except httpx.HTTPError as error:
            self.failures.append(repr(error))
            return
        if response.status_code != 200:
            self.failures.append(f"{response.status_code} {response.text[:80]}")
            return
        # "hello from web.3 v1"
        self.answers.append((time.monotonic(), response.text.split()[2]))

    def dynos_before(self, moment: float) -> Counter[str]:
        return Counter(name for at, name in list(self.answers) if at < moment)

    def __enter__(self) -> Load:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(60)


@pytest.fixture(scope="module")
def two_nodes() -> Iterator[tuple[Platform, SecondAgent]]:
    platform = Platform.create(PAAS_NODE_NAME=FIRST, PAAS_NODE_GRACE=str(NODE_GRACE))
    second: SecondAgent | None = None
    try:
        platform.up()
        second = SecondAgent(platform, SECOND)
        second.start()
        yield platform, second
    finally:
        if second is not None:
            second.remove()
        platform.down()


def api_get(platform: Platform, path: str) -> Any:
    with platform.api() as api:
        response = api.get(path)
        response.raise_for_status()
        return response.json()


def node_states(platform: Platform) -> dict[str, str]:
    listed = json.loads(platform.paas("nodes", "--json").stdout)
    return {node["name"]: node["state"] for node in listed}


def web_dynos(platform: Platform) -> list[dict[str, Any]]:
    return [d for d in api_get(platform, f"/v1/apps/{APP}/dynos") if d["type"] == "web"]


def up_by_node(platform: Platform) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for dyno in web_dynos(platform):
        if dyno["state"] == "up":
            found.setdefault(dyno["node"], set()).add(dyno["name"])
    return found


def eventually(check: Callable[[], Any], timeout: float, what: str,
               explain: Callable[[], str] = lambda: "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.3)
    raise AssertionError(f"never happened: {what}\n{explain()}")


def test_dynos_spread_over_two_nodes_and_move_when_one_stops_without_a_failed_request(
        two_nodes: tuple[Platform, SecondAgent], tmp_path: Path) -> None:
    platform, second = two_nodes
    explain = second.output
    eventually(lambda: node_states(platform) == {FIRST: "ready", SECOND: "ready"}, 60,
               "both nodes ready", explain)
    platform.paas("apps:create", APP)
    repo = app_repo(tmp_path, "dynos")
    result = git(repo, "push", platform.remote_url(APP), "main", check=False)
    assert result.returncode == 0, result.stderr
    platform.paas("ps:scale", "web=4", "-a", APP)

    def spread() -> dict[str, set[str]] | None:
        found = up_by_node(platform)
        return found if sorted(map(len, found.values())) == [2, 2] else None

    placed = eventually(spread, 120, "two up web dynos on each node", explain)
    assert set(placed) == {FIRST, SECOND}
    on_second = placed[SECOND]
    every = placed[FIRST] | on_second
    eventually(lambda: {platform.get(APP).text.split()[2] for _ in range(40)} == every, 60,
               "all four answer through the router")

    with Load(platform) as load:
        eventually(lambda: set(load.dynos_before(time.monotonic())) >= on_second, 60,
                   "the load reaches node-b's dynos")
        stopped_at = time.monotonic()
        second.stop()
        eventually(lambda: node_states(platform).get(SECOND) == "lost", 60, "node-b lost")
        eventually(lambda: up_by_node(platform) == {FIRST: {"web.1", "web.2", "web.3",
                                                            "web.4"}},
                   120, "all four up on node-a", explain)
        time.sleep(3)  # requests to the moved dynos, on their new node
    reached = load.dynos_before(stopped_at)
    assert all(reached[name] > 0 for name in on_second), reached  # the positive control
    assert load.failures == [], (load.failures[:10], len(load.answers))
    assert len(load.answers) > 100, len(load.answers)
    assert node_states(platform) == {FIRST: "ready", SECOND: "lost"}

    # Back again, node-b retires the dynos it no longer has; then it goes for good.
    second.start()
    eventually(lambda: not [d for d in web_dynos(platform) if d["node"] == SECOND], 90,
               "node-b's old dynos retired", explain)
    assert len(up_by_node(platform)[FIRST]) == 4
    second.stop()
