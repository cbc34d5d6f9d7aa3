"""Injection: app names, config keys and values, process types, buildpack URLs and paths, and
symlinks in the pushed tree, each crafted to run a command or leave the app's directories. The
canary files the payloads would create stay absent, no secret shows in any output, and nothing
in PAAS_HOME outside the app's own directories changes.

Runs on a platform of its own, so no other test's dynos change PAAS_HOME meanwhile."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.platform import Platform, app_repo, commit_all, git, second_subnet

pytestmark = pytest.mark.e2e

# Written all the time by the platform itself, whatever the apps do.
LIVE = ("paas.db", "redis/", "router/error.log", "router/nginx.stderr", "router/tmp/",
        "layers/", "builds/", "build-bundles/", "paas-up.pid", "dynos/.last-ip-")
LIVE_DYNO_FILES = {"output.log", "shipped", "agent.json"}


@pytest.fixture(scope="module")
def own_platform() -> Iterator[Platform]:
    subnet = second_subnet()
    platform = Platform.create(PAAS_DYNO_SUBNET=subnet)
    try:
        platform.up()
        yield platform
    finally:
        platform.down()


def snapshot(home: Path, app: str) -> dict[str, tuple[int, int, int]]:
    """Every path under PAAS_HOME but the app's own and the platform's live files: mode,
    size and mtime."""
    files = {}
    for root, dirs, names in os.walk(home):
        dirs[:] = [d for d in dirs if app not in d]
        for name in [*names, *dirs]:
            path = Path(root, name)
            rel = str(path.relative_to(home)) + ("/" if path.is_dir() else "")
            if (rel.startswith(LIVE) or name in LIVE_DYNO_FILES or app in rel
                    or path.is_dir()):
                continue
            info = path.lstat()
            files[rel] = (info.st_mode, info.st_size, info.st_mtime_ns)
    return files


def payloads(canary: Path) -> list[str]:
    return [f"; touch {canary}", f"$(touch {canary})", f"`touch {canary}`",
            f"|touch {canary}", f"&& touch {canary}", "../../../etc/passwd", "\ntouch x"]


def push(platform: Platform, repo: Path, app: str) -> tuple[int, str]:
    result = git(repo, "push", platform.remote_url(app), "main", check=False)
    return result.returncode, result.stdout + result.stderr


def test_crafted_input_never_escapes(own_platform: Platform, tmp_path: Path) -> None:
    platform = own_platform
    canary = Path(f"/tmp/paas-canary-{uuid.uuid4().hex}")
    app = f"inj-{uuid.uuid4().hex[:6]}"
    bystander = f"bystander-{uuid.uuid4().hex[:6]}"
    platform.paas("apps:create", bystander)
    assert push(platform, app_repo(tmp_path / bystander, "procfile-only"), bystander)[0] == 0
    platform.paas("apps:create", app)
    secrets = [platform.token, (platform.home / "service-token").read_text().strip(),
               (platform.home / "dashboard-secret").read_text().strip()]
    before = snapshot(platform.home, app)
    assert {"admin-token", "router/nginx.conf", f"repos/{bystander}.git/HEAD"} <= before.keys()
    assert any(k.startswith(f"dynos/{bystander}-") for k in before)
    outputs: list[str] = []

    with platform.api() as api:
        for evil in payloads(canary):
            for name in (evil, f"a{evil}", f"{app}{evil}"):
                response = api.post("/v1/apps", json={"name": name})
                assert response.status_code == 422, (name, response.text)
                assert "app name" in response.json()["message"], response.text
                git_url = f"/git/{quote(name, safe='')}.git/info/refs"
                assert api.get(git_url, params={"service": "git-receive-pack"}
                               ).status_code in (400, 404)
            response = api.patch(f"/v1/apps/{app}/config", json={f"K{evil}": "v"})
            assert response.status_code == 422, response.text
            response = api.patch(f"/v1/apps/{app}/formation", json={f"web{evil}": 1})
            assert response.status_code in (404, 422), response.text
        values = {f"EVIL{i}": evil for i, evil in enumerate(payloads(canary))}
        assert api.patch(f"/v1/apps/{app}/config", json=values).status_code == 200

    repo = app_repo(tmp_path / app, "procfile-only")
    (repo / "etc").symlink_to("/etc")
    (repo / "home").symlink_to(platform.home)
    (repo / "token").symlink_to(platform.home / "admin-token")
    commit_all(repo, "symlinks out of the tree")
    code, output = push(platform, repo, app)
    assert code == 0, output
    outputs.append(output)
    # the config values reach the dyno verbatim, never run; the symlinks lead nowhere
    shown = platform.paas(
        "run", "-a", app, "--", "/usr/bin/python3 -c 'import os, json; print(json.dumps("
        "{k: v for k, v in os.environ.items() if k.startswith(\"EVIL\")}))'; "
        "cat token home/admin-token; ls home/", check=False)
    outputs.append(shown.stdout + shown.stderr)
    line = next(x for x in shown.stdout.splitlines() if x.startswith("{"))
    assert json.loads(line) == values, shown.stdout
    assert "ls: cannot access 'home/'" in shown.stdout, shown.stdout

    for bad, message in [
        ({".buildpacks": "\n".join(payloads(canary))}, ".buildpacks"),
        ({"Procfile": f"web: exec sleep 1\n$(touch {canary}): sleep 1\n"}, "Procfile"),
        ({"Procfile": f"web;touch {canary}: sleep 1\n"}, "Procfile"),
        ({".buildpacks": platform.home / "service-token"}, ".buildpacks"),
        ({"project.toml": platform.home / "admin-token"}, "project.toml"),
        ({"Procfile": platform.home / "dashboard-secret"}, "Procfile"),
    ]:
        for name, content in bad.items():
            (repo / name).unlink(missing_ok=True)
            if isinstance(content, Path):
                (repo / name).symlink_to(content)
            else:
                (repo / name).write_text(content)
        commit_all(repo, f"crafted {message}")
        code, output = push(platform, repo, app)
        outputs.append(output)
        assert code != 0 and message in output, output
        git(repo, "reset", "-q", "--hard", "HEAD~1")
    with platform.api() as api:
        url = f"https://example.invalid/x.git;touch {canary}"
        response = api.patch(f"/v1/apps/{app}/config", json={"BUILDPACK_URL": url})
        assert response.status_code == 200
    (repo / "README").write_text("again")
    commit_all(repo, "with BUILDPACK_URL")
    code, output = push(platform, repo, app)
    outputs.append(output)
    assert code != 0, output

    assert not canary.exists()
    assert not Path("touch x").exists()
    for output in outputs:
        for secret in secrets:
            assert secret not in output
    after = snapshot(platform.home, app)
    assert {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)} == set()
    assert platform.get(bystander).status_code == 200
    for name in (app, bystander):
        platform.paas("apps:destroy", name, "--confirm", name)
