"""Every push gets an answer, bounded in time: a release whose dynos the platform cannot start
(their network taken on the host), or does not start (the dyno agent stopped), fails as a
platform error, and a build that no worker takes fails too; the push is rejected with the
reason and the app keeps its release."""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.e2e.test_faults import children, service_pid
from tests.platform import Platform, app_repo, commit_all, git, second_subnet

pytestmark = pytest.mark.e2e

BOOT_TIMEOUT, MARGIN, QUEUE_TIMEOUT, PHASE_TIMEOUT = 30, 10, 20, 8
V1_TEXT = "Hello from a Procfile-only app on paas"


@pytest.fixture(scope="module")
def bounded() -> Iterator[Platform]:
    """A platform of this module's own with a short release margin, so that a release that
    never goes live fails within BOOT_TIMEOUT + MARGIN seconds, a short build queue and a
    short release phase timeout."""
    # The agent and the worker each alone, so that one can hang while the other works.
    platform = Platform.create(PAAS_DYNO_SUBNET=second_subnet(), PAAS_ROLES_APART="agent,worker",
                               PAAS_BOOT_TIMEOUT=str(BOOT_TIMEOUT),
                               PAAS_RELEASE_MARGIN=str(MARGIN),
                               PAAS_BUILD_QUEUE_TIMEOUT=str(QUEUE_TIMEOUT),
                               PAAS_RELEASE_PHASE_TIMEOUT=str(PHASE_TIMEOUT))
    try:
        platform.up()
        yield platform
    finally:
        platform.down()


def push(platform: Platform, repo: Path, app: str,
         timeout: float) -> tuple[subprocess.CompletedProcess[str], float]:
    """The push and how long it took; a push still waiting after `timeout` fails the test."""
    started = time.monotonic()
    try:
        result = subprocess.run(["git", "push", platform.remote_url(app), "main"], cwd=repo,
                                env={**os.environ, "GIT_TERMINAL_PROMPT": "0",
                                     "HOME": str(repo.parent)},
                                capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as waiting:
        raise AssertionError(f"the push got no answer within {timeout:g} s:\n"
                             f"{waiting.stderr!r}") from None
    return result, time.monotonic() - started


def deployed_app(platform: Platform, tmp: Path, name: str) -> Path:
    """A deployed procfile-only app (v1), and a second commit ready to push."""
    platform.paas("apps:create", name)
    repo = app_repo(tmp, "procfile-only")
    first, _ = push(platform, repo, name, timeout=300)
    assert first.returncode == 0, first.stderr
    platform.wait_for(name, V1_TEXT)
    (repo / "index.html").write_text("<p>version two</p>\n")
    commit_all(repo, "version two")
    return repo


def releases_of(platform: Platform, app: str) -> list[dict]:
    return json.loads(platform.paas("releases", "-a", app, "--json").stdout)


@contextmanager
def network_taken(network: ipaddress.IPv4Network) -> Iterator[str]:
    """Another interface of the host with an address in `network` (a /32: the app's bridge
    keeps its route, so its running dynos are not disturbed); removed afterwards."""
    name = f"pt{uuid.uuid4().hex[:10]}"
    address = network[-2]
    subprocess.run(["ip", "link", "add", name, "type", "bridge"], check=True)
    try:
        subprocess.run(["ip", "addr", "add", f"{address}/32", "dev", name], check=True)
        yield name
    finally:
        subprocess.run(["ip", "link", "del", name], check=False)


def test_a_dyno_network_taken_on_the_host_rejects_the_push_as_a_platform_error(
        bounded: Platform, tmp_path: Path) -> None:
    repo = deployed_app(bounded, tmp_path, "net-taken")
    v1_commit = git(repo, "rev-parse", "HEAD~1").stdout.strip()
    [dyno] = json.loads(bounded.paas("ps", "-a", "net-taken", "--json").stdout)
    network = ipaddress.ip_network(f"{dyno['ip']}/24", strict=False)
    with network_taken(network) as taker:
        second, took = push(bounded, repo, "net-taken", timeout=240)
        serving = bounded.get("net-taken").text
        remote = git(repo, "ls-remote", bounded.remote_url("net-taken"), "main").stdout
        # A release phase's one-off meets the same refusal.
        with (repo / "Procfile").open("a") as procfile:
            procfile.write("release: echo migrating\n")
        commit_all(repo, "a release phase")
        phase, _ = push(bounded, repo, "net-taken", timeout=240)
    assert second.returncode != 0
    assert "! [remote rejected] main -> main (release v2 failed: platform error: web.1 of v2 " \
        f"could not start: the dyno network {network} is already used by {taker}" \
        in second.stderr, second.stderr
    assert "the app keeps v1" in second.stderr
    assert took < 180, took
    assert V1_TEXT in serving and remote.split()[0] == v1_commit
    v2 = next(r for r in releases_of(bounded, "net-taken") if r["version"] == 2)
    assert v2["status"] == "failed" and "platform error" in v2["error"]
    assert phase.returncode != 0
    assert "(release v3 failed: platform error: the release phase could not start: the dyno " \
        f"network {network} is already used by {taker}" in phase.stderr, phase.stderr

    # The network free again: the same push deploys.
    again, _ = push(bounded, repo, "net-taken", timeout=300)
    assert again.returncode == 0, again.stderr
    assert "migrating" in again.stderr
    bounded.wait_for("net-taken", "version two")


def test_a_release_whose_dynos_never_start_fails_after_the_deadline(
        bounded: Platform, tmp_path: Path) -> None:
    repo = deployed_app(bounded, tmp_path, "no-agent")
    agent = service_pid(bounded, "paas.runtime.agent")
    assert agent is not None
    os.kill(agent, signal.SIGSTOP)  # a hung agent: `paas up` sees no exit, so no restart
    try:
        second, took = push(bounded, repo, "no-agent", timeout=240)
        serving = bounded.get("no-agent").text
    finally:
        os.kill(agent, signal.SIGCONT)
    assert second.returncode != 0
    assert (f"release v2 failed: platform error: v2 was not live within {BOOT_TIMEOUT + MARGIN} s"
            f" (PAAS_BOOT_TIMEOUT {BOOT_TIMEOUT} s + PAAS_RELEASE_MARGIN {MARGIN} s): web.1 is "
            "waiting: no node is up (is an agent running?)") in second.stderr, second.stderr
    assert "the app keeps v1" in second.stderr
    assert BOOT_TIMEOUT + MARGIN < took < 180, took
    assert V1_TEXT in serving
    assert [r["status"] for r in releases_of(bounded, "no-agent")][:2] == ["failed", "succeeded"]
    bounded.wait_for("no-agent", V1_TEXT)  # and after the agent is back


def test_a_build_that_no_worker_takes_fails_after_the_queue_timeout(
        bounded: Platform, tmp_path: Path) -> None:
    repo = deployed_app(bounded, tmp_path, "no-worker")
    worker = service_pid(bounded, "celery")
    assert worker is not None
    frozen = [worker, *children(worker)]
    for pid in frozen:  # a hung worker: `paas up` sees no exit, so no restart
        os.kill(pid, signal.SIGSTOP)
    try:
        second, took = push(bounded, repo, "no-worker", timeout=240)
    finally:
        for pid in frozen:
            os.kill(pid, signal.SIGCONT)
    assert second.returncode != 0
    assert f"no build worker took the build within {QUEUE_TIMEOUT} s (PAAS_BUILD_QUEUE_TIMEOUT)" \
        in second.stderr, second.stderr
    assert QUEUE_TIMEOUT < took < 180, took
    assert V1_TEXT in bounded.get("no-worker").text

    # The worker back, the same push builds and deploys (the stale task changes nothing).
    again, _ = push(bounded, repo, "no-worker", timeout=300)
    assert again.returncode == 0, again.stderr
    bounded.wait_for("no-worker", "version two")
    assert [r["version"] for r in releases_of(bounded, "no-worker")] == [2, 1]


def release_dynos(platform: Platform, app: str) -> list[dict]:
    dynos = json.loads(platform.paas("ps", "-a", app, "--json").stdout)
    return [d for d in dynos if d.get("type") == "release"]


def test_a_release_phase_that_runs_too_long_rejects_the_push(
        bounded: Platform, tmp_path: Path) -> None:
    repo = deployed_app(bounded, tmp_path, "slow-phase")
    with (repo / "Procfile").open("a") as procfile:
        procfile.write("release: sleep 600\n")
    commit_all(repo, "a release phase that never ends")
    second, took = push(bounded, repo, "slow-phase", timeout=180)
    assert second.returncode != 0
    assert f"(release v2 failed: release phase ran longer than {PHASE_TIMEOUT} s " \
        "(PAAS_RELEASE_PHASE_TIMEOUT); the app keeps v1" in second.stderr, second.stderr
    assert PHASE_TIMEOUT < took < 120, took
    assert V1_TEXT in bounded.get("slow-phase").text
    assert [r["status"] for r in releases_of(bounded, "slow-phase")][:2] == \
        ["failed", "succeeded"]
    deadline = time.monotonic() + 90  # the agent stops it within the app's stop grace
    while release_dynos(bounded, "slow-phase") and time.monotonic() < deadline:
        time.sleep(2)
    assert release_dynos(bounded, "slow-phase") == []
    assert V1_TEXT in bounded.get("slow-phase").text
