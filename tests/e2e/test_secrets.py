"""Credentials in URLs (a BUILDPACK_URL, a `.buildpacks` line, a pip index URL) appear nowhere
the platform writes: push output, build and release errors, `paas logs`, the API."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.e2e.test_buildpacks import commit_all_empty, git_http_server
from tests.platform import Platform, app_repo, commit_all, git

pytestmark = pytest.mark.e2e

SECRET = "s3cr3tT0ken"


def push(platform: Platform, repo: Path, app: str) -> subprocess.CompletedProcess[str]:
    return git(repo, "push", platform.remote_url(app), "main", check=False)


def everything_said(platform: Platform, app: str, *pushes: subprocess.CompletedProcess[str]
                    ) -> str:
    """What a user can read about the app: the pushes, its log, its last build and releases."""
    with platform.api() as api:
        build = api.get(f"/v1/apps/{app}/builds/latest").text
        releases = api.get(f"/v1/apps/{app}/releases").text
    logs = platform.paas("logs", "-a", app, "-n", "1500").stdout
    return "\n".join([*(p.stdout + p.stderr for p in pushes), build, releases, logs])


def test_buildpack_url_credentials_are_redacted_and_the_host_stays(
        platform: Platform, tmp_path: Path) -> None:
    platform.paas("apps:create", "secret-bp")
    with git_http_server(tmp_path / "served") as base_url:
        hostport = base_url.removeprefix("http://")
        repo = app_repo(tmp_path, "classic-buildpack")
        (repo / ".buildpacks").write_text(f"http://deploy:{SECRET}@{hostport}/greeting.git\n")
        commit_all(repo, "a buildpack fetched with credentials")
        fetched = push(platform, repo, "secret-bp")
        assert fetched.returncode == 0, fetched.stderr
        assert f"Fetching buildpack http://***@{hostport}/greeting.git" in fetched.stderr

        platform.paas("config:set", f"BUILDPACK_URL=http://{SECRET}@{hostport}/missing.git",
                      "-a", "secret-bp")
        commit_all_empty(repo)
        missing = push(platform, repo, "secret-bp")
    assert missing.returncode != 0
    assert f"cannot fetch buildpack http://***@{hostport}/missing.git" in missing.stderr
    said = everything_said(platform, "secret-bp", fetched, missing)
    assert f"http://***@{hostport}/missing.git" in build_error(platform, "secret-bp")
    assert SECRET not in said
    assert platform.get("secret-bp").status_code == 200  # the fetched buildpack's release


def test_pip_index_url_credentials_are_redacted(platform: Platform, tmp_path: Path) -> None:
    platform.paas("apps:create", "secret-pip")
    with git_http_server(tmp_path / "served") as base_url:
        hostport = base_url.removeprefix("http://")
        platform.paas("config:set", f"PIP_INDEX_URL=http://pip:{SECRET}@{hostport}/simple",
                      "PIP_RETRIES=0", "-a", "secret-pip")
        repo = app_repo(tmp_path, "flask-hello")
        # the host's own wheels (PIP_FIND_LINKS) have flask: only the index could have this
        (repo / "requirements.txt").write_text("flask\npaas-test-not-a-package\n")
        commit_all(repo, "a requirement that only the app's index could have")
        pushed = push(platform, repo, "secret-pip")
    assert pushed.returncode != 0
    assert "uv could not install the packages in requirements.txt" in pushed.stderr
    assert hostport in pushed.stderr  # the build names the index: the user can act on it
    assert SECRET not in everything_said(platform, "secret-pip", pushed)


def build_error(platform: Platform, app: str) -> str:
    with platform.api() as api:
        return str(api.get(f"/v1/apps/{app}/builds/latest").json()["error"])
