"""The walking skeleton, end to end: a real git client pushes over HTTP, a Celery worker
builds in a runc build container, the agent runs dynos under runc, nginx routes to them."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from tests.gate import BuildGate
from tests.platform import Platform, app_repo, commit_all, git

pytestmark = pytest.mark.e2e


def push(platform: Platform, repo: Path, app: str, *extra: str) -> subprocess.CompletedProcess:
    return git(repo, "push", platform.remote_url(app), "main", *extra, check=False)


def test_push_builds_and_serves_a_flask_app_through_the_router(platform: Platform,
                                                              tmp_path: Path) -> None:
    platform.paas("apps:create", "hello")
    repo = app_repo(tmp_path, "flask-hello")

    result = push(platform, repo, "hello")

    assert result.returncode == 0, result.stderr
    assert "remote: -----> Building hello" in result.stderr
    assert "remote: -----> Released v1" in result.stderr
    assert "hello.localhost" in result.stderr
    assert platform.get("hello").text == "Hello from paas\n"
    assert git(repo, "ls-remote", platform.remote_url("hello"), "main").stdout.startswith(
        git(repo, "rev-parse", "HEAD").stdout.strip())

    (repo / "app.py").write_text((repo / "app.py").read_text().replace(
        "Hello from paas", "Hello again from paas"))
    commit_all(repo, "new greeting")
    second = push(platform, repo, "hello")

    assert second.returncode == 0, second.stderr
    assert "Reusing virtualenv" in second.stderr
    assert platform.get("hello").text == "Hello again from paas\n"
    releases = json.loads(platform.paas("releases", "-a", "hello", "--json").stdout)
    assert [(r["version"], r["current"]) for r in releases] == [(2, True), (1, False)]
    assert {r["created_by"] for r in releases} == {"admin@localhost"}


def test_a_failed_build_rejects_the_push_and_the_old_release_keeps_serving(
        platform: Platform, tmp_path: Path) -> None:
    platform.paas("apps:create", "fails")
    repo = app_repo(tmp_path, "procfile-only")
    assert push(platform, repo, "fails").returncode == 0
    before = git(repo, "rev-parse", "HEAD").stdout.strip()
    platform.wait_for("fails", "Procfile-only app")

    (repo / "requirements.txt").write_text("paas-this-package-does-not-exist==0.0.0\n")
    commit_all(repo, "break the build")
    result = push(platform, repo, "fails")

    assert result.returncode != 0
    assert "! [remote rejected] main -> main" in result.stderr
    assert "paas-this-package-does-not-exist" in result.stderr
    assert "Procfile-only app" in platform.get("fails").text
    remote_head = git(repo, "ls-remote", platform.remote_url("fails"), "main").stdout.split()[0]
    assert remote_head == before
    statuses = [b["status"] for b in json.loads(
        platform.paas("builds", "-a", "fails", "--json").stdout)]
    assert statuses == ["failed", "succeeded"]


def test_build_output_reaches_the_pusher_while_the_build_runs(platform: Platform,
                                                             tmp_path: Path) -> None:
    platform.paas("apps:create", "slow")
    gate = BuildGate(platform.home)
    platform.paas("config:set", f"PAAS_TEST_GATE_PORT={gate.port}", "-a", "slow")
    repo = app_repo(tmp_path, "slow-build")
    with gate, subprocess.Popen(
            ["git", "push", platform.remote_url("slow"), "main"], cwd=repo,
            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
            env={"GIT_TERMINAL_PROMPT": "0", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    ) as pushing:
        assert pushing.stderr is not None
        seen = []
        for line in pushing.stderr:
            seen.append(line)
            if "remote: -----> Waiting for the test" in line:
                break
        assert any("Waiting for the test" in line for line in seen), "".join(seen)
        builds = json.loads(platform.paas("builds", "-a", "slow", "--json").stdout)
        assert builds[0]["status"] == "building"
        assert pushing.poll() is None
        gate.open()
        rest = pushing.stderr.read()
        assert pushing.wait(120) == 0, "".join(seen) + rest
    assert "the gate on port" in rest
    platform.wait_for("slow", "slow-build is up")


def test_procfile_comments_and_a_worker_process_type(platform: Platform,
                                                     tmp_path: Path) -> None:
    platform.paas("apps:create", "workers")
    repo = app_repo(tmp_path, "procfile-only")
    (repo / "Procfile").write_text(
        "# a comment, then a blank line\n\n"
        "web: /usr/bin/python3 -m http.server $PORT\n"
        "worker: while true; do echo \"worker alive $DYNO\"; sleep 1; done\n")
    commit_all(repo, "add a worker")
    assert push(platform, repo, "workers").returncode == 0

    platform.paas("ps:scale", "worker=1", "-a", "workers")

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        logs = platform.paas("logs", "-a", "workers", "--json").stdout
        if "worker alive worker.1" in logs:
            break
        time.sleep(0.5)
    assert "worker alive worker.1" in logs
    dynos = json.loads(platform.paas("ps", "-a", "workers", "--json").stdout)
    assert {(d["name"], d["state"]) for d in dynos} >= {("web.1", "up"), ("worker.1", "up")}


def test_the_new_release_answers_before_the_old_one_stops(platform: Platform,
                                                          tmp_path: Path) -> None:
    platform.paas("apps:create", "switch")
    repo = app_repo(tmp_path, "procfile-only")
    assert push(platform, repo, "switch").returncode == 0
    platform.wait_for("switch", "Procfile-only app")

    result = platform.paas("config:set", "COLOR=blue", "-a", "switch")
    assert "v2" in result.stdout
    failures = 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if platform.get("switch").status_code != 200:
            failures += 1
        releases = json.loads(platform.paas("releases", "-a", "switch", "--json").stdout)
        dynos = json.loads(platform.paas("ps", "-a", "switch", "--json").stdout)
        if releases[0]["current"] and [d["release"] for d in dynos] == [2]:
            break
    assert releases[0]["current"] and [d["release"] for d in dynos] == [2]
    assert failures == 0


def test_unknown_host_gets_a_page_that_says_no_such_app(platform: Platform) -> None:
    response = platform.get("no-such-app")
    assert response.status_code == 404
    assert "no such app" in response.text.lower()


def test_invalid_app_names_are_refused(platform: Platform) -> None:
    for name in ("Bad_Name", "../etc", "a", "x" * 31, "9lives", "trailing-"):
        result = platform.paas("apps:create", name, check=False)
        assert result.returncode != 0
        assert "invalid app name" in result.stderr
