"""Root never follows a path that a build can write: the build-symlinks app's own buildpack
plants a symlink (or a FIFO) wherever the worker, as root, reads, writes or binds after a build
step, each aimed at a root-owned canary outside PAAS_HOME. The canaries stay as they were, the
push is rejected with a message naming the planted entry, and no host content reaches the
build output or a slug. A normal build with the same buildpack still deploys."""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.platform import Platform, app_repo

pytestmark = pytest.mark.e2e
SECRET = "host-secret-6f1c"
# Valid TOML and a plausible layer/launch file: read through a link, it would show in the
# release (a process type) or the layer's metadata.
CANARY_TEXT = f'[types]\nlaunch = true\n\n[[processes]]\ntype = "leak"\ncommand = "{SECRET}"\n'
REFUSED = "in a state the platform refuses"


@dataclass(frozen=True)
class Canaries:
    file: Path  # in a 0700 root directory outside PAAS_HOME
    directory: Path  # that directory
    buildpack: Path  # a readable buildpack outside PAAS_HOME: run, it prints CANARY-RAN

    def unchanged(self) -> bool:
        return (self.file.read_text() == CANARY_TEXT
                and sorted(os.listdir(self.directory)) == ["canary"])


@pytest.fixture
def canaries() -> Iterator[Canaries]:
    directory = Path(tempfile.mkdtemp(prefix="paas-canary-", dir="/tmp"))
    buildpack = Path(tempfile.mkdtemp(prefix="paas-canary-bp-", dir="/tmp"))
    try:
        directory.chmod(0o700)
        (directory / "canary").write_text(CANARY_TEXT)
        buildpack.chmod(0o755)
        (buildpack / "bin").mkdir(mode=0o755)
        for script in ("detect", "build"):
            path = buildpack / "bin" / script
            path.write_text("#!/bin/sh\necho CANARY-RAN\nexit 1\n")
            path.chmod(0o755)
        yield Canaries(directory / "canary", directory, buildpack)
    finally:
        shutil.rmtree(directory)
        shutil.rmtree(buildpack)


def push_with(platform: Platform, tmp: Path, canaries: Canaries, attack: str | None,
              sample: str = "build-symlinks") -> tuple[str, subprocess.CompletedProcess[str]]:
    app = f"sym-{(attack or 'none')[:12].strip('-')}-{uuid.uuid4().hex[:5]}"
    platform.paas("apps:create", app)
    config = [f"CANARY_FILE={canaries.file}", f"CANARY_DIR={canaries.directory}",
              f"CANARY_BUILDPACK={canaries.buildpack}", *([f"ATTACK={attack}"] if attack else [])]
    platform.paas("config:set", *config, "-a", app)
    repo = app_repo(tmp / app, sample)
    # A FIFO that root opened for writing would block the worker: bounded here.
    result = subprocess.run(["git", "push", platform.remote_url(app), "main"], cwd=repo,
                            capture_output=True, text=True, timeout=240,
                            env={**os.environ, "GIT_TERMINAL_PROMPT": "0"})
    return app, result


def destroy(platform: Platform, app: str) -> None:
    platform.paas("apps:destroy", app, "--confirm", app)


@pytest.mark.parametrize(("attack", "planted", "reason"), [
    # detect plants, the worker writes the build plan next
    ("plan", "/cnb/plan/attack.build.toml", "is a symlink"),
    ("plan-fifo", "/cnb/plan/attack.build.toml", "is a FIFO"),
    # detect replaces /app/.layers, the worker makes the layers' mount points next
    ("layers", "/app/.layers", "is not a directory"),
    # build plants, the worker reads the buildpack's metadata next
    ("launch-toml", "/app/.layers/attack/launch.toml", "is a symlink"),
    ("layer-toml", "/app/.layers/attack/leak.toml", "is a symlink"),
    ("env-file", "/app/.layers/attack/web/env/LEAK", "is a symlink"),
])
def test_a_planted_link_fails_the_build_and_leaves_the_canary(
        platform: Platform, tmp_path: Path, canaries: Canaries, attack: str, planted: str,
        reason: str) -> None:
    app, result = push_with(platform, tmp_path, canaries, attack)
    assert canaries.unchanged()
    assert result.returncode != 0, result.stderr
    assert "! [remote rejected] main -> main" in result.stderr
    assert f"buildpack attack left {planted} {REFUSED}: it {reason}" in result.stderr
    assert SECRET not in result.stderr
    destroy(platform, app)


def test_a_classic_buildpacks_linked_release_output_fails_the_build(
        platform: Platform, tmp_path: Path, canaries: Canaries) -> None:
    """A classic buildpack's compile links <layers>/release.yml (bin/release's output) to a
    host file: the worker does not read the file as the buildpack's release metadata."""
    app, result = push_with(platform, tmp_path, canaries, None, "build-symlinks-classic")
    assert "-----> classic attack buildpack" in result.stderr
    assert result.returncode != 0, result.stderr
    planted = "/app/.layers/classic_classic-bp/release.yml"
    assert f"buildpack classic/classic-bp left {planted} {REFUSED}: it is a symlink" in (
        result.stderr)
    assert canaries.unchanged() and SECRET not in result.stderr
    destroy(platform, app)


def test_an_own_buildpack_replaced_by_a_link_is_not_bound(
        platform: Platform, tmp_path: Path, canaries: Canaries) -> None:
    """Detect swaps the app's own buildpack directory for a link to a host directory: the
    next step still runs the buildpack as it was pushed (a copy made before any step)."""
    app, result = push_with(platform, tmp_path, canaries, "own-buildpack")
    assert "CANARY-RAN" not in result.stderr
    assert "-----> attack buildpack: own-buildpack" in result.stderr
    assert result.returncode == 0, result.stderr
    assert canaries.unchanged()
    destroy(platform, app)


def slug_tars(platform: Platform, app: str) -> list[list[tarfile.TarInfo]]:
    """The entries of each layer of the app's last build; no file in them holds the secret."""
    with platform.api() as api:
        build = api.get(f"/v1/apps/{app}/builds").json()[-1]
    found = []
    for layer in build["layers"]:
        blob = platform.home / "layers" / "blobs" / "sha256" / layer["digest"].split(":")[1]
        with tarfile.open(blob, "r:gz") as tar:
            members = tar.getmembers()
            for member in members:
                if member.isreg():
                    content = tar.extractfile(member)
                    assert content is not None and SECRET.encode() not in content.read()
        found.append(members)
    return found


def test_a_normal_build_deploys_and_its_links_stay_links(
        platform: Platform, tmp_path: Path, canaries: Canaries) -> None:
    """The positive control, with links in the layer, the workspace and the cache that the
    slug records as links and the cleanup removes without following."""
    plain, result = push_with(platform, tmp_path, canaries, None)
    assert result.returncode == 0, result.stderr
    assert "-----> attack buildpack: none" in result.stderr
    platform.wait_for(plain, "symlinks app")
    app, result = push_with(platform, tmp_path, canaries, "links")
    assert result.returncode == 0, result.stderr
    assert canaries.unchanged()
    assert SECRET not in result.stderr
    links = {m.name: m.linkname for members in slug_tars(platform, app)
             for m in members if m.issym()}
    assert links[".layers/attack/web/leak"] == str(canaries.file)
    assert links["leak"] == str(canaries.file) and links["leak-dir"] == str(canaries.directory)
    for name in (plain, app):
        destroy(platform, name)
    assert canaries.unchanged()
