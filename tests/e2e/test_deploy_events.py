"""Deploys, config changes and the old dynos' retirement happen without waiting for the agent's
interval: the agent wakes on the API's notification of a new release, on its booting dyno
listening and on the router's acknowledgement (paas/notify.py). Here the interval is longer
than this whole test may wait, so each step is done only if the events carried it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.platform import Platform, app_repo, commit_all, git

pytestmark = pytest.mark.e2e

APP = "events"


@pytest.fixture(scope="module")
def slow_agent() -> Iterator[Platform]:
    # The node's heartbeat is the agent's pass: a grace beyond the interval keeps it live.
    platform = Platform.create(PAAS_AGENT_INTERVAL="600", PAAS_NODE_GRACE="3600")
    try:
        platform.up()
        yield platform
    finally:
        platform.down()


def releases_running(platform: Platform) -> list[int]:
    return [d["release"] for d in json.loads(platform.paas("ps", "-a", APP, "--json").stdout)]


def only_release_running(platform: Platform, version: int, timeout: float = 60) -> list[int]:
    deadline = time.monotonic() + timeout
    while (running := releases_running(platform)) != [version] and time.monotonic() < deadline:
        time.sleep(0.3)
    return running


def test_a_deploy_and_a_config_change_go_live_without_the_agents_interval(
        slow_agent: Platform, tmp_path: Path) -> None:
    slow_agent.paas("apps:create", APP)
    repo = app_repo(tmp_path, "flask-hello")

    first = git(repo, "push", slow_agent.remote_url(APP), "main", check=False)

    assert first.returncode == 0, first.stderr
    assert "Released v1" in first.stderr and "deployed to paas" in first.stderr
    assert slow_agent.get(APP).text == "Hello from paas\n"

    (repo / "app.py").write_text((repo / "app.py").read_text().replace(
        "Hello from paas", "Hello again from paas"))
    commit_all(repo, "new greeting")
    second = git(repo, "push", slow_agent.remote_url(APP), "main", check=False)

    assert second.returncode == 0, second.stderr
    assert "Released v2" in second.stderr
    assert "has not picked up the new dynos" not in second.stderr
    assert slow_agent.get(APP).text == "Hello again from paas\n"
    # The old dyno is stopped once the router no longer routes to it, not at the next pass.
    assert only_release_running(slow_agent, 2) == [2]

    slow_agent.paas("config:set", "GREETING=from an event", "-a", APP)

    assert "from an event" in slow_agent.wait_for(APP, "from an event").text
    assert only_release_running(slow_agent, 3) == [3]
    slow_agent.paas("apps:destroy", APP, "--confirm", APP)
