"""Two real agents on this machine (two runtime homes, two dyno subnets, one API, one router
reaching both): `ps:scale web=4` puts two on each, and stopping one agent moves its dynos to
the other with no failed request through the router."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from paas.runtime import Runtime
from paas.settings import Settings
from tests.e2e.test_dynos import Visitor, deploy, eventually, ps
from tests.platform import Platform, free_subnet

GRACE = "5"


@dataclass
class TwoNodes:
    platform: Platform  # node-a's agent is the platform's own
    agent_b: subprocess.Popen[bytes]  # node-b's: its own runtime home and dyno subnet


@pytest.fixture
def two_nodes() -> Iterator[TwoNodes]:
    platform = Platform.create(PAAS_NODE_NAME="node-a", PAAS_NODE_GRACE=GRACE)
    second = {**platform.env, "PAAS_NODE_NAME": "node-b", "PAAS_DYNO_SUBNET": free_subnet(),
              "PAAS_RUNTIME_HOME": str(platform.home.parent / "node-b")}
    agent: subprocess.Popen[bytes] | None = None
    try:
        platform.up()
        with (platform.home.parent / "node-b.log").open("wb") as log:
            agent = subprocess.Popen([sys.executable, "-m", "paas.runtime.agent"], env=second,
                                     stdout=log, stderr=subprocess.STDOUT)
        yield TwoNodes(platform, agent)
    finally:
        if agent is not None and agent.poll() is None:
            agent.kill()
        # node-b's dynos outlive its agent; `paas down` stops only node-a's.
        Runtime(Settings(home=platform.home, runtime_home_override=second["PAAS_RUNTIME_HOME"],
                         dyno_subnet=second["PAAS_DYNO_SUBNET"])).teardown()
        platform.down()


def nodes(platform: Platform) -> dict[str, dict[str, Any]]:
    return {n["name"]: n for n in json.loads(platform.paas("nodes", "--json").stdout)}


def web_by_node(platform: Platform) -> Counter[str]:
    return Counter(d["node"] for d in ps(platform, "spread")
                   if d["type"] == "web" and d["state"] == "up")


def test_two_nodes_share_the_web_dynos_and_one_stopping_fails_no_request(
        two_nodes: TwoNodes, tmp_path: Path) -> None:
    platform = two_nodes.platform
    eventually(lambda: set(nodes(platform)) == {"node-a", "node-b"}, what="both registered")
    deploy(platform, tmp_path, "spread")
    platform.paas("ps:scale", "web=4", "-a", "spread")
    eventually(lambda: web_by_node(platform) == {"node-a": 2, "node-b": 2}, timeout=90,
               what="2 + 2 web dynos", explain=lambda: str(ps(platform, "spread")))
    with Visitor(platform, "spread") as visitor:
        eventually(lambda: visitor.answers > 20, what="requests served")
        two_nodes.agent_b.kill()  # its dynos go on running
        eventually(lambda: nodes(platform)["node-b"]["state"] == "lost", timeout=60)
        eventually(lambda: web_by_node(platform) == {"node-a": 4}, timeout=120,
                   what="node-b's dynos on node-a", explain=lambda: str(ps(platform, "spread")))
        answered = visitor.answers
        eventually(lambda: visitor.answers > answered + 20, what="more requests served")
    assert visitor.failures == [], visitor.failures[:5]

