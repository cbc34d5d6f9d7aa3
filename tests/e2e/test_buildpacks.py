"""Buildpacks and layered slugs, end to end: sample apps pushed with the real git client to the
shared platform, each asserting the page it serves or the error the pusher sees."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from wsgiref.simple_server import WSGIRequestHandler

import pytest
from dulwich.repo import Repo
from dulwich.server import DictBackend
from dulwich.web import make_server, make_wsgi_chain

from tests.platform import APPS, SERVED_ON, Platform, app_repo, commit_all, git

pytestmark = pytest.mark.e2e

# Config vars that make pip's and npm's registries unreachable (a closed loopback port, so
# nothing leaves the machine): a build that needed either would fail.
NO_REGISTRIES = [
    "PIP_INDEX_URL=http://127.0.0.1:9/simple",
    "PIP_EXTRA_INDEX_URL=http://127.0.0.1:9/simple",
    "PIP_FIND_LINKS=http://127.0.0.1:9/links",
    "PIP_RETRIES=0",
    "NPM_CONFIG_REGISTRY=http://127.0.0.1:9/",
    "NPM_CONFIG_FETCH_RETRIES=0",
]


def push(platform: Platform, repo: Path, app: str) -> subprocess.CompletedProcess:
    return git(repo, "push", platform.remote_url(app), "main", check=False)


def deploy(platform: Platform, tmp: Path, sample: str, app: str) -> tuple[Path, str]:
    platform.paas("apps:create", app)
    repo = app_repo(tmp, sample)
    result = push(platform, repo, app)
    assert result.returncode == 0, result.stderr
    return repo, result.stderr


def rejected(platform: Platform, tmp: Path, sample: str, app: str) -> str:
    platform.paas("apps:create", app)
    result = push(platform, app_repo(tmp, sample), app)
    assert result.returncode != 0
    assert "! [remote rejected] main -> main" in result.stderr
    return result.stderr


def blobs(platform: Platform) -> set[str]:
    return {p.name for p in (platform.home / "layers" / "blobs" / "sha256").iterdir()
            if not p.name.startswith(".")}


def build_info(platform: Platform, app: str) -> dict:
    return json.loads(platform.paas("builds:info", "-a", app, "--json").stdout)


def unpacked_inode(platform: Platform, digest: str) -> int:
    """The inode of the layer's unpacked copy (the overlayfs lower dir the dynos mount)."""
    [path] = (platform.home / "layers" / "unpacked").glob(f"*/{digest[7:]}")
    return path.stat().st_ino


def code_only_push(platform: Platform, repo: Path, app: str, edit: Path, old: str,
                   new: str) -> tuple[str, set[str], dict]:
    """Breaks the registries for the app, pushes a code change; returns the output, the blobs
    the rebuild added to the store and the new build's info."""
    platform.paas("config:set", *NO_REGISTRIES, "-a", app)
    edit.write_text(edit.read_text().replace(old, new))
    commit_all(repo, "code only")
    before = blobs(platform)
    result = push(platform, repo, app)
    assert result.returncode == 0, result.stderr
    return result.stderr, blobs(platform) - before, build_info(platform, app)


def only_new_layer(platform: Platform, added: set[str], info: dict) -> list[str]:
    """The new blobs that are layers: the manifest and image config of the slug are new too."""
    manifest = json.loads((platform.home / "layers" / "blobs" / "sha256" /
                           info["manifest"][7:]).read_text())
    meta = {info["manifest"][7:], manifest["config"]["digest"][7:]}
    return sorted(added - meta)


def test_express_app_builds_then_a_code_only_push_reuses_node_modules(
        platform: Platform, tmp_path: Path) -> None:
    repo, output = deploy(platform, tmp_path, "express-hello", "express")
    assert "Installing node_modules: npm ci" in output
    assert "Running the build script: npm run build" in output
    assert "asks for Node.js 18.x (engines.node), but this stack" in output
    assert platform.get("express").text == (
        "Hello from Express on paas (built with express 4.21.2)\n")
    first = build_info(platform, "express")
    modules = next(layer for layer in first["layers"] if layer["name"] == "nodejs/modules")
    inode = unpacked_inode(platform, modules["digest"])

    output, added, second = code_only_push(platform, repo, "express",
                                           repo / "src" / "greeting.txt", "Hello", "Howdy")

    assert "Reusing node_modules" in output
    assert platform.get("express").text.startswith("Howdy from Express on paas")
    app_layer = next(layer for layer in second["layers"] if layer["name"] == "app")
    assert only_new_layer(platform, added, second) == [app_layer["digest"][7:]]
    assert [(layer["name"], layer["reused"]) for layer in second["layers"]] == [
        ("nodejs/modules", True), ("app", False)]
    assert unpacked_inode(platform, modules["digest"]) == inode
    table = platform.paas("builds:info", "-a", "express").stdout
    assert "nodejs/modules" in table and "reused" in table and "New bytes:" in table


def test_flask_app_with_runtime_txt_reuses_its_virtualenv(platform: Platform,
                                                          tmp_path: Path) -> None:
    repo, output = deploy(platform, tmp_path, "flask-hello", "flask-layers")
    assert "runtime.txt asks for Python 3.11.6; building with the stack's Python 3.11" in output
    first = build_info(platform, "flask-layers")
    venv = next(layer for layer in first["layers"] if layer["name"] == "python/venv")
    inode = unpacked_inode(platform, venv["digest"])

    output, added, second = code_only_push(platform, repo, "flask-layers", repo / "app.py",
                                           "Hello from paas", "Hello anew from paas")

    assert "Reusing virtualenv" in output
    assert platform.get("flask-layers").text == "Hello anew from paas\n"
    app_layer = next(layer for layer in second["layers"] if layer["name"] == "app")
    assert only_new_layer(platform, added, second) == [app_layer["digest"][7:]]
    assert unpacked_inode(platform, venv["digest"]) == inode

    (repo / "requirements.txt").write_text("flask\nitsdangerous\n")
    commit_all(repo, "a dependency change needs the (now unreachable) index")
    broken = push(platform, repo, "flask-layers")
    assert broken.returncode != 0
    assert "uv could not install the packages in requirements.txt" in broken.stderr


def test_django_app_runs_collectstatic_and_whitenoise_serves_the_files(
        platform: Platform, tmp_path: Path) -> None:
    repo, output = deploy(platform, tmp_path, "django-hello", "django")
    assert "Running: manage.py collectstatic --noinput" in output
    page = platform.get("django").text
    assert page.startswith("Hello from Django on paas; style at /static/hello/style.")
    css = platform.get("django", page.split("style at ")[1].strip())
    assert css.status_code == 200
    assert "rebeccapurple" in css.text

    settings = repo / "hello" / "settings.py"
    settings.write_text(settings.read_text().replace('STATIC_ROOT = BASE_DIR / "staticfiles"\n',
                                                     ""))
    commit_all(repo, "no STATIC_ROOT: collectstatic cannot work")
    broken = push(platform, repo, "django")
    assert broken.returncode != 0
    assert "Running: manage.py collectstatic --noinput" in broken.stderr
    assert "ImproperlyConfigured" in broken.stderr and "STATIC_ROOT" in broken.stderr
    assert "collectstatic failed: the output above says why." in broken.stderr
    assert "DISABLE_COLLECTSTATIC=1" in broken.stderr
    assert platform.get("django").text == page


def test_pipfile_lock_app_gets_its_locked_default_packages(platform: Platform,
                                                           tmp_path: Path) -> None:
    _, output = deploy(platform, tmp_path, "pipfile-hello", "pipfile")
    assert "Installing dependencies from Pipfile.lock with uv" in output
    assert "Pipfile.lock lists 2 packages" in output
    assert platform.get("pipfile").text == (
        "Hello from a Pipfile.lock app on paas (itsdangerous 2.2.0, no pywin32, no pytest)\n")


def test_pyproject_static_procfile_and_own_cnb_buildpack_apps_serve(
        platform: Platform, tmp_path: Path) -> None:
    deploy(platform, tmp_path, "pyproject-hello", "pyproject")
    assert platform.get("pyproject").text == "Hello from a pyproject.toml app on paas\n"

    _, output = deploy(platform, tmp_path, "static-site", "static")
    assert "Static site detected" in output
    assert "Hello from a static site on paas" in platform.get("static").text
    assert platform.get("static", "/.hidden-note").status_code == 404

    _, output = deploy(platform, tmp_path, "procfile-only", "procfile")
    assert "Building with buildpacks: procfile" in output
    assert "Hello from a Procfile-only app on paas" in platform.get("procfile").text

    _, output = deploy(platform, tmp_path, "cnb-project", "cnb")
    assert "The app's own buildpack" in output
    assert platform.get("cnb").text == (
        "Hello from a CNB buildpack in project.toml on paas; hello-tool 1.0\n")


def test_classic_buildpack_from_dot_buildpacks_with_profile_d(platform: Platform,
                                                              tmp_path: Path) -> None:
    platform.paas("apps:create", "classic")
    platform.paas("config:set", "SIGNATURE=the team", "-a", "classic")
    repo = app_repo(tmp_path, "classic-buildpack")
    result = push(platform, repo, "classic")
    assert result.returncode == 0, result.stderr
    assert "Using the buildpacks named by .buildpacks" in result.stderr
    assert "compile number 1 with this cache" in result.stderr
    assert platform.get("classic").text == (
        "Hello from a classic buildpack on paas (signed: the team)\n"
        "set by .profile.d at dyno start\n")
    names = [layer["name"] for layer in build_info(platform, "classic")["layers"]]
    assert names == ["classic", "app"]

    platform.paas("config:set", "BUILDPACK_URL=git://127.0.0.1:9/missing.git", "-a", "classic")
    commit_all_empty(repo)
    fetched = push(platform, repo, "classic")
    assert fetched.returncode != 0
    assert ("cannot fetch buildpack git://127.0.0.1:9/missing.git: git:// cannot pass the "
            "build's egress proxy") in fetched.stderr

    with git_http_server(tmp_path / "served") as base_url:
        # the fetch runs in the build's network, so an address the proxy keeps closed stays so
        closed = base_url.replace(SERVED_ON, "127.0.0.3")
        platform.paas("config:set", f"BUILDPACK_URL={closed}/greeting.git", "-a", "classic")
        commit_all_empty(repo)
        refused = push(platform, repo, "classic")
        assert refused.returncode != 0
        assert f"Egress refused: {closed.removeprefix('http://')}: 127.0.0.3 is a loopback" in (
            refused.stderr)
        assert f"cannot fetch buildpack {closed}/greeting.git" in refused.stderr

        platform.paas("config:set", f"BUILDPACK_URL={base_url}/greeting.git#fetched",
                      "-a", "classic")
        commit_all_empty(repo)
        from_url = push(platform, repo, "classic")
    assert from_url.returncode == 0, from_url.stderr
    assert "Using the buildpacks named by BUILDPACK_URL" in from_url.stderr
    assert f"Fetching buildpack {base_url}/greeting.git#fetched" in from_url.stderr
    assert platform.get("classic").text == (
        "Hello from a classic buildpack on paas (signed: the team, by the fetched buildpack)\n"
        "set by .profile.d at dyno start\n")

    platform.paas("config:set", "BUILDPACK_URL=../../etc", "-a", "classic")
    commit_all_empty(repo)
    escaped = push(platform, repo, "classic")
    assert escaped.returncode != 0
    assert "must be a directory inside the repository" in escaped.stderr
    assert platform.get("classic").text.startswith("Hello from a classic buildpack")


def commit_all_empty(repo: Path) -> None:
    git(repo, "commit", "-q", "--allow-empty", "-m", "again")


@contextmanager
def git_http_server(base: Path) -> Iterator[str]:
    """The sample's classic buildpack as a git repository served over smart HTTP (dulwich) on
    SERVED_ON, an address test platforms open to builds (PAAS_EGRESS_ALLOW); its branch
    `fetched` signs the page differently, so the page shows which copy ran."""
    work = base / "work"
    shutil.copytree(APPS / "classic-buildpack" / "buildpacks" / "greeting", work)
    git(work, "init", "-q", "-b", "main")
    commit_all(work, "the greeting buildpack")
    git(work, "checkout", "-q", "-b", "fetched")
    compile_script = work / "bin" / "compile"
    compile_script.write_text(compile_script.read_text().replace(
        "(signed: %s)", "(signed: %s, by the fetched buildpack)"))
    commit_all(work, "sign as the fetched copy")
    git(base, "clone", "-q", "--bare", str(work), str(base / "greeting.git"))
    backend = DictBackend({"/greeting.git": Repo(str(base / "greeting.git"))})
    server = make_server(SERVED_ON, 0, make_wsgi_chain(backend), handler_class=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{SERVED_ON}:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


class QuietHandler(WSGIRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def test_builds_that_cannot_succeed_say_why(platform: Platform, tmp_path: Path) -> None:
    too_new = rejected(platform, tmp_path, "python-too-new", "too-new")
    assert ".python-version asks for Python 3.14, but this stack provides Python 3.11" in too_new

    nothing = rejected(platform, tmp_path, "nothing-detected", "nothing")
    assert "No buildpack detected this app" in nothing
    assert "nodejs: a package.json" in nothing and "procfile: a Procfile" in nothing

    # uv's build of ./hog is OOM-killed; uv and the buildpack's shell survive and exit 1.
    hog = rejected(platform, tmp_path, "memory-hog", "hog")
    assert "uv could not install the packages in requirements.txt" in hog
    assert "buildpack python ran out of memory during build: the kernel killed" in hog
    assert "builds may use 2048 MB (PAAS_BUILD_MEMORY_MB)" in hog


def test_slugs_gc_keeps_what_releases_use(platform: Platform, tmp_path: Path) -> None:
    deploy(platform, tmp_path, "procfile-only", "gc-keep")
    orphan = platform.home / "layers" / "blobs" / "sha256" / ("0" * 64)
    orphan.write_bytes(b"no release names this blob")

    info = build_info(platform, "gc-keep")
    named = {info["manifest"][7:], *(layer["digest"][7:] for layer in info["layers"])}

    result = json.loads(platform.paas("slugs:gc", "--min-age", "0", "--json").stdout)

    assert f"sha256:{orphan.name}" in result["removed"]
    assert not orphan.exists()
    assert named <= blobs(platform)
    platform.paas("ps:restart", "-a", "gc-keep")
    assert "Hello from a Procfile-only app on paas" in platform.get("gc-keep").text
    assert "Removed 0 blobs" in platform.paas("slugs:gc").stdout


def test_each_deploy_collects_layers_beyond_the_kept_releases(platform: Platform,
                                                              tmp_path: Path) -> None:
    platform.paas("apps:create", "gc-auto")
    repo = app_repo(tmp_path, "procfile-only")
    app_layers = {}
    for version in range(1, 7):
        (repo / "version.txt").write_text(f"gc-auto v{version}\n")
        commit_all(repo, f"v{version}")
        result = push(platform, repo, "gc-auto")
        assert result.returncode == 0, result.stderr
        assert f"Released v{version}" in result.stderr
        app_layers[version] = next(layer["digest"][7:] for layer in
                                   build_info(platform, "gc-auto")["layers"])

    # v6's deploy kept v2..v6 (the last 5; v5 was current, v4 the rollback default).
    stored = blobs(platform)
    assert {v for v, digest in app_layers.items() if digest in stored} == {2, 3, 4, 5, 6}

    refused = platform.paas("rollback", "v1", "-a", "gc-auto", check=False)
    assert refused.returncode != 0
    assert "v1's slug is gone: its layers were garbage-collected" in refused.stderr
    assert platform.get("gc-auto", "/version.txt").text == "gc-auto v6\n"

    platform.paas("rollback", "v2", "-a", "gc-auto")
    deadline = time.monotonic() + 60
    while platform.get("gc-auto", "/version.txt").text != "gc-auto v2\n":
        assert time.monotonic() < deadline, "the rollback to v2 never served v2's code"
        time.sleep(0.3)
