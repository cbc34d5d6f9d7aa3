"""The control plane on PostgreSQL: a platform whose PAAS_DATABASE_URL is a database on the
tests' own PostgreSQL 15 cluster (tests/postgres.py), and a second API process beside its own
(`python -m paas.api` on another port, the same PAAS_HOME, Redis and database). Both serve the
same state: an app created through one is configured through the other; a push through the
second is built by the worker and promoted by the agent's reports to the first; releases made
at the same moment through both get distinct, gapless versions (the writer advisory lock,
paas/database.py: without it the two processes compute the same next version)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.platform import PAAS, Platform, app_repo, commit_all, free_port, git

pytestmark = pytest.mark.e2e

CONCURRENT = 12  # config:set calls, half through each API process


@pytest.fixture(scope="module")
def pg_platform(pg_cluster: Any) -> Iterator[Platform]:
    platform = Platform.create(PAAS_DATABASE_URL=pg_cluster.create_database("two_apis"))
    try:
        platform.up()
        yield platform
    finally:
        platform.down()


@pytest.fixture(scope="module")
def second_api(pg_platform: Platform) -> Iterator[str]:
    """Another API process on the platform's database: its URL."""
    port = free_port()
    env = {**pg_platform.env, "PAAS_API_PORT": str(port), "PAAS_SSH_PORT": "0"}
    log = (pg_platform.home.parent / "second-api.log").open("ab")
    process = subprocess.Popen([sys.executable, "-m", "paas.api"], env=env, stdout=log,
                               stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None, "the second API process exited"
            assert time.monotonic() < deadline, "the second API process never answered"
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def paas_at(platform: Platform, api_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**platform.env, "PAAS_API_URL": api_url, "PAAS_API_TOKEN": platform.token}
    result = subprocess.run([PAAS, *args], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"paas {' '.join(args)} via {api_url}:\n{result.stderr}"
    return result


def remote_at(platform: Platform, api_url: str, app: str) -> str:
    return api_url.replace("http://", f"http://paas:{platform.token}@") + f"/git/{app}.git"


def served_env(platform: Platform, app: str, version: int, timeout: float = 90) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = platform.get(app).json()
            if last["env"].get("PAAS_RELEASE_VERSION") == f"v{version}":
                return last["env"]
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.3)
    raise AssertionError(f"{app} never served v{version}; last: {last}")


def test_the_platform_runs_on_postgresql(pg_platform: Platform) -> None:
    doctor = json.loads(pg_platform.paas("doctor", "--json", check=False).stdout)
    database = [f for f in doctor if f["check"] == "database"]
    assert [f["detail"] for f in database] == ["PostgreSQL 15 answers"]
    assert not (pg_platform.home / "paas.db").exists()


def test_two_api_processes_serve_the_same_state(pg_platform: Platform, second_api: str,
                                                tmp_path: Path) -> None:
    first = pg_platform.api_url
    paas_at(pg_platform, first, "apps:create", "twoapis")
    assert "twoapis" in paas_at(pg_platform, second_api, "apps").stdout

    repo = app_repo(tmp_path, "env-echo")
    pushed = git(repo, "push", remote_at(pg_platform, first, "twoapis"), "main", check=False)
    assert pushed.returncode == 0, pushed.stderr
    paas_at(pg_platform, second_api, "config:set", "SET_THROUGH=second", "-a", "twoapis")
    assert served_env(pg_platform, "twoapis", 2)["SET_THROUGH"] == "second"
    shown = json.loads(paas_at(pg_platform, first, "config", "-a", "twoapis", "--json").stdout)
    assert shown == {"SET_THROUGH": "second"}

    # Built by the worker and promoted on the agent's reports, both to the first API; the
    # second, which received the push, sees the release go live in the shared database.
    (repo / "code.txt").write_text("two\n")
    commit_all(repo, "two")
    pushed = git(repo, "push", remote_at(pg_platform, second_api, "twoapis"), "main",
                 check=False)
    assert pushed.returncode == 0, pushed.stderr
    assert "Released v3" in pushed.stderr
    assert served_env(pg_platform, "twoapis", 3)["SET_THROUGH"] == "second"
    assert pg_platform.get("twoapis").json()["code"] == "two"
    listed = [json.loads(paas_at(pg_platform, url, "releases", "-a", "twoapis",
                                 "--json").stdout) for url in (first, second_api)]
    assert listed[0] == listed[1]
    assert [r["version"] for r in listed[0] if r["current"]] == [3]


def test_releases_made_at_once_through_both_apis_get_distinct_versions(
        pg_platform: Platform, second_api: str) -> None:
    apis = [pg_platform.api_url, second_api]
    clients = [httpx.Client(base_url=url, timeout=60,
                            headers={"Authorization": f"Bearer {pg_platform.token}"})
               for url in apis]

    def set_one(number: int) -> httpx.Response:
        return clients[number % 2].patch("/v1/apps/twoapis/config",
                                         json={f"K{number}": f"v{number}"})

    try:
        with ThreadPoolExecutor(CONCURRENT) as pool:
            answers = list(pool.map(set_one, range(CONCURRENT)))
    finally:
        for client in clients:
            client.close()
    assert [a.status_code for a in answers] == [200] * CONCURRENT, [a.text for a in answers]
    versions = sorted(a.json()["release"] for a in answers)
    assert versions == list(range(4, 4 + CONCURRENT))

    last = 3 + CONCURRENT
    env = served_env(pg_platform, "twoapis", last)
    assert {f"K{n}": env.get(f"K{n}") for n in range(CONCURRENT)} == {
        f"K{n}": f"v{n}" for n in range(CONCURRENT)}
    info = json.loads(paas_at(pg_platform, second_api, "releases:info", f"v{last}", "-a",
                              "twoapis", "--json").stdout)
    assert len(info["config_keys"]) == CONCURRENT + 1


def test_a_database_moved_from_sqlite_serves_its_apps(tmp_path: Path, pg_cluster: Any) -> None:
    """An installation on SQLite, moved with `paas db:migrate-from-sqlite` and started again
    on PostgreSQL, still has its apps, config vars and releases, and its admin token works."""
    platform = Platform.create()
    platform.env.pop("PAAS_DATABASE_URL", None)  # SQLite, also under make test-postgres
    try:
        platform.up()
        platform.paas("apps:create", "moved")
        repo = app_repo(tmp_path, "env-echo")
        assert git(repo, "push", platform.remote_url("moved"), "main",
                   check=False).returncode == 0
        platform.paas("config:set", "KEPT=yes ✓", "-a", "moved")
        served_env(platform, "moved", 2)
        platform.stop_control_plane()

        target = pg_cluster.create_database("moved")
        moved = subprocess.run([PAAS, "db:migrate-from-sqlite", "--to", target],
                               env=platform.env, capture_output=True, text=True, timeout=120)
        assert moved.returncode == 0, moved.stderr
        platform.env["PAAS_DATABASE_URL"] = target
        platform.up()
        assert json.loads(platform.paas("config", "-a", "moved", "--json").stdout) == {
            "KEPT": "yes ✓"}
        platform.paas("config:set", "AFTER=move", "-a", "moved")
        env = served_env(platform, "moved", 3)
        assert (env["KEPT"], env["AFTER"]) == ("yes ✓", "move")
    finally:
        platform.down()
