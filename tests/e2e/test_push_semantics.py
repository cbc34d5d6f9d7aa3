"""Push order on the whole platform: concurrent pushes to one app wait for each other, then
fast-forward or are refused ("fetch first") unless forced; a pusher that goes away does not
cancel its deploy; what a clone returns is what is deployed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.gate import BuildGate
from tests.platform import Platform, app_repo, commit_all, git

pytestmark = pytest.mark.e2e


class Push:
    """A `git push` running in the background; its stderr is collected as it arrives."""

    def __init__(self, platform: Platform, repo: Path, app: str, *extra: str) -> None:
        self.proc = subprocess.Popen(
            ["git", "push", platform.remote_url(app), "main", *extra], cwd=repo,
            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
            start_new_session=True,
            env={"GIT_TERMINAL_PROMPT": "0", "PATH": "/usr/bin:/bin", "HOME": str(repo.parent)})
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    @property
    def stderr(self) -> str:
        return "".join(self.lines)

    def wait_for(self, text: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.stderr:
            assert time.monotonic() < deadline, f"{text!r} never came: {self.stderr}"
            assert self.proc.poll() is None or text in self.stderr, self.stderr
            time.sleep(0.1)

    def finish(self) -> int:
        code = self.proc.wait(180)
        self.reader.join(10)
        assert self.proc.stderr is not None
        self.proc.stderr.close()
        return code


def head(repo: Path) -> str:
    return git(repo, "rev-parse", "HEAD").stdout.strip()


def deployed(platform: Platform, repo: Path, app: str) -> str:
    out = git(repo, "ls-remote", platform.remote_url(app), "refs/heads/main").stdout
    return out.split()[0] if out else ""


def gated_app(platform: Platform, app: str) -> BuildGate:
    """An app whose builds wait until the returned gate is opened."""
    platform.paas("apps:create", app)
    gate = BuildGate(platform.home)
    platform.paas("config:set", f"PAAS_TEST_GATE_PORT={gate.port}", "-a", app)
    return gate


def test_concurrent_pushes_wait_then_fast_forward_or_fetch_first_and_force_works(
        platform: Platform, tmp_path: Path) -> None:
    gate = gated_app(platform, "order")
    first = app_repo(tmp_path, "slow-build")
    one = Push(platform, first, "order")
    one.wait_for("remote: -----> Waiting for the test")

    # the second builds on the first's commit (not deployed yet); the third on its own history
    second = tmp_path / "second"
    git(tmp_path, "clone", "-q", str(first), "second")
    (second / "index.html").write_text("<p>second push</p>\n")
    commit_all(second, "second")
    two = Push(platform, second, "order")
    two.wait_for("remote: -----> Waiting for the push in progress to order")
    third = app_repo(tmp_path / "third", "slow-build")
    (third / "index.html").write_text("<p>third push</p>\n")
    commit_all(third, "third")
    three = Push(platform, third, "order")
    three.wait_for("remote: -----> Waiting for the push in progress to order")
    with gate:
        gate.open()
        assert one.finish() == 0, one.stderr
        assert two.finish() == 0, two.stderr
        assert three.finish() != 0
        assert "fetch first" in three.stderr
        assert "! [remote rejected] main -> main" in three.stderr
        assert deployed(platform, second, "order") == head(second)
        platform.wait_for("order", "second push")

        forced = Push(platform, third, "order", "--force")
        assert forced.finish() == 0, forced.stderr
    assert deployed(platform, third, "order") == head(third)
    platform.wait_for("order", "third push")
    releases = json.loads(platform.paas("releases", "-a", "order", "--json").stdout)
    assert [r["commit"] for r in releases if r["status"] == "succeeded"][:3] == [
        head(third), head(second), head(first)]


def test_a_pusher_that_disconnects_does_not_cancel_the_deploy(platform: Platform,
                                                             tmp_path: Path) -> None:
    gate = gated_app(platform, "leaver")
    repo = app_repo(tmp_path, "slow-build")
    push = Push(platform, repo, "leaver")
    push.wait_for("remote: -----> Waiting for the test")
    os.killpg(push.proc.pid, signal.SIGKILL)
    push.finish()
    assert deployed(platform, repo, "leaver") == ""

    with gate:
        gate.open()
        platform.wait_for("leaver", "slow-build is up", timeout=120)
    deadline = time.monotonic() + 30
    while deployed(platform, repo, "leaver") != head(repo):
        assert time.monotonic() < deadline, "the ref never moved with the release"
        time.sleep(0.3)
    clone = git(tmp_path, "clone", "-q", platform.remote_url("leaver"), "clone", check=False)
    assert clone.returncode == 0, clone.stderr
    assert head(tmp_path / "clone") == head(repo)
