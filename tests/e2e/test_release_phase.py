"""The release phase and app.json: a `release:` process (and app.json's predeploy script) runs
as a one-off before the new release takes traffic, health checks gate the switch, app.json's
formation sets the first scale."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.platform import Platform, app_repo, commit_all, git

pytestmark = pytest.mark.e2e


def api_get(platform: Platform, path: str) -> Any:
    with platform.api() as api:
        return api.get(path).json()

PROCFILE = "web: exec /usr/bin/python3 server.py\n"


def push(platform: Platform, repo: Path, app: str) -> tuple[int, str]:
    result = git(repo, "push", platform.remote_url(app), "main", check=False)
    return result.returncode, result.stderr


def test_a_failing_release_command_rejects_the_push_with_its_output(platform: Platform,
                                                                    tmp_path: Path) -> None:
    platform.paas("apps:create", "phased")
    repo = app_repo(tmp_path, "dynos")
    (repo / "Procfile").write_text(PROCFILE + 'release: echo "migrating for $DYNO"\n')
    commit_all(repo, "release phase")
    code, output = push(platform, repo, "phased")
    assert code == 0, output
    assert "remote: -----> Running release command: echo" in output
    assert "remote:        migrating for release.1" in output
    assert "hello from web.1 v1" in platform.get("phased").text
    before = git(repo, "rev-parse", "HEAD").stdout.strip()

    (repo / "Procfile").write_text(PROCFILE + 'release: echo "migration 42 broke"; exit 4\n')
    commit_all(repo, "a failing migration")
    code, output = push(platform, repo, "phased")

    assert code != 0
    assert "migration 42 broke" in output
    assert "the release phase failed (exit code 4)" in output
    assert "hello from web.1 v1" in platform.get("phased").text
    assert git(repo, "ls-remote", platform.remote_url("phased"), "main").stdout.startswith(before)
    releases = json.loads(platform.paas("releases", "-a", "phased", "--json").stdout)
    assert [(r["version"], r["status"]) for r in releases] == [(2, "failed"), (1, "succeeded")]
    dynos = json.loads(platform.paas("ps", "-a", "phased", "--json").stdout)
    assert {d["release"] for d in dynos if d["type"] == "web"} == {1}


def test_app_json_formation_scripts_and_health_checks(platform: Platform,
                                                     tmp_path: Path) -> None:
    platform.paas("apps:create", "manifest")
    platform.paas("config:set", "HEALTH_BODY=warming up", "-a", "manifest")
    repo = app_repo(tmp_path, "dynos")
    (repo / "Procfile").write_text(PROCFILE)
    manifest = {
        "formation": {"web": {"quantity": 2, "size": "eco"}},
        "scripts": {"dokku": {"predeploy": "echo predeploy ran in $DYNO",
                              "postdeploy": "echo postdeploy ran in $DYNO"}},
        "healthchecks": {"web": [{"type": "startup", "path": "/health", "content": "ok",
                                  "wait": 1, "attempts": 2, "timeout": 2}]},
    }
    (repo / "app.json").write_text(json.dumps(manifest))
    commit_all(repo, "app.json")

    code, output = push(platform, repo, "manifest")
    assert code != 0
    assert "never became healthy: health check GET /health failed 2 times" in output
    assert "does not contain 'ok'" in output
    assert "predeploy ran in release.1" in output

    manifest["healthchecks"]["web"][0]["content"] = "warming"
    # As Dokku reads it: a comment and a trailing comma.
    (repo / "app.json").write_text("// the web dyno is healthy once it is warming up\n" +
                                   json.dumps(manifest, indent=2)[:-2] + ",\n}\n")
    commit_all(repo, "a health check that passes")
    code, output = push(platform, repo, "manifest")
    assert code == 0, output
    assert "hello from web" in platform.get("manifest").text
    dynos = json.loads(platform.paas("ps", "-a", "manifest", "--json").stdout)
    assert sorted(d["name"] for d in dynos if d["type"] == "web") == ["web.1", "web.2"]
    formation = api_get(platform, "/v1/apps/manifest/formation")
    assert formation == [{"type": "web", "quantity": 2, "size": "eco"}]
    deadline = time.monotonic() + 30
    while "postdeploy ran in postdeploy.1" not in (
            logs := platform.paas("logs", "-a", "manifest").stdout):
        assert time.monotonic() < deadline, logs
        time.sleep(0.5)
    assert "Health check /health passed" in logs

    (repo / "app.json").write_text('{"healthchecks": {"web": [{"path": "health"}]}}')
    commit_all(repo, "a bad app.json")
    code, output = push(platform, repo, "manifest")
    assert code != 0
    assert "path must start with /" in output

    (repo / "app.json").write_text('{\n  // no comma after the formation\n  "formation": {}\n'
                                   '  "scripts": {}\n}\n')
    commit_all(repo, "an app.json that is not JSON")
    code, output = push(platform, repo, "manifest")
    assert code != 0
    assert "app.json is not valid JSON (comments and trailing commas are fine): line 4, " \
        "column 3" in output
