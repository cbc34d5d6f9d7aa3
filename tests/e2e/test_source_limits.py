"""A small pack of a huge tree: refused by the receiver before any build, with the setting
named, and neither the API nor the worker holds the tree in memory; a tree just under the
limit builds and deploys, with the same bounded memory."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_git_ssh import make_key, ssh_command, ssh_url
from tests.gittrees import commit_file_at
from tests.platform import Platform, app_repo, commit_all, git
from tests.services import Growth

pytestmark = pytest.mark.e2e

CAP_MB = 300
# What the API and the worker may grow by while they take a push and build it: far below the
# tree's size (the code before streamed nothing: the API held the tree twice, the worker once).
GROWTH_BOUND_MB = 150
FILES_CAP = 50


@pytest.fixture(scope="module")
def capped() -> Iterator[Platform]:
    platform = Platform.create(PAAS_MAX_SOURCE_MB=str(CAP_MB), PAAS_MAX_SOURCE_FILE_MB="1024",
                               PAAS_MAX_SOURCE_FILES=str(FILES_CAP))
    try:
        platform.up()
        yield platform
    finally:
        platform.down()


def zeros(path: Path, megabytes: int) -> None:
    """A sparse file of zeros: git packs it into well under a megabyte."""
    with path.open("wb") as f:
        f.truncate(megabytes * 1024 * 1024)


def push(platform: Platform, repo: Path, app: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "push", platform.remote_url(app), "main"], cwd=repo, capture_output=True,
        text=True, timeout=600,
        env={"GIT_TERMINAL_PROMPT": "0", "PATH": "/usr/bin:/bin", "HOME": str(repo.parent)})


def assert_bounded(growth: Growth) -> None:
    for name, grown in growth.grown_mb().items():
        assert grown < GROWTH_BOUND_MB, (
            f"{name} grew by {grown:.0f} MB (before {growth.before[name]:.0f} MB, "
            f"sampled peak {growth.sampler.peaks[name]:.0f} MB)")


def test_a_tree_over_the_cap_is_refused_before_a_build_with_bounded_memory(
        capped: Platform, tmp_path: Path) -> None:
    capped.paas("apps:create", "zeros")
    repo = app_repo(tmp_path, "procfile-only")
    zeros(repo / "zeros.bin", 600)
    commit_all(repo, "600 MB of zeros")
    assert os.path.getsize(repo / "zeros.bin") == 600 << 20

    with Growth(capped) as growth:
        result = push(capped, repo, "zeros")
    assert result.returncode != 0, result.stderr
    message = f"the pushed tree unpacks to more than {CAP_MB} MB (PAAS_MAX_SOURCE_MB)"
    assert message in result.stderr
    assert "! [remote rejected] main -> main" in result.stderr
    assert "Build" not in result.stderr  # refused by the receiver: no build was queued
    assert_bounded(growth)
    with capped.api() as api:
        builds = api.get("/v1/apps/zeros/builds/latest")
    assert builds.status_code == 404, builds.text
    assert git(repo, "ls-remote", capped.remote_url("zeros")).stdout == ""


def test_a_tree_just_under_the_cap_builds_and_deploys_with_bounded_memory(
        capped: Platform, tmp_path: Path) -> None:
    capped.paas("apps:create", "nearly")
    repo = app_repo(tmp_path, "procfile-only")
    zeros(repo / "zeros.bin", CAP_MB - 20)
    commit_all(repo, "nearly the cap")

    with Growth(capped) as growth:
        result = push(capped, repo, "nearly")
    assert result.returncode == 0, result.stderr
    assert_bounded(growth)
    capped.wait_for("nearly", "Hello from a Procfile-only app")


def test_over_ssh_a_tree_with_too_many_files_is_refused_the_same_way(
        capped: Platform, tmp_path: Path) -> None:
    key = make_key(tmp_path, "pusher")
    capped.paas("keys:add", f"{key}.pub")
    capped.paas("apps:create", "many")
    repo = app_repo(tmp_path, "procfile-only")
    for i in range(FILES_CAP + 1):
        (repo / f"f{i}.txt").write_text(f"{i}\n")
    commit_all(repo, "one file too many")
    git(repo, "config", "core.sshCommand", ssh_command(key))
    pushed = git(repo, "push", ssh_url(capped, "many"), "main", check=False)
    assert pushed.returncode != 0
    assert (f"the pushed tree holds more than {FILES_CAP} files (PAAS_MAX_SOURCE_FILES)"
            in pushed.stderr)
    assert "Build" not in pushed.stderr


def test_a_path_too_long_for_linux_is_refused_with_the_reason(
        capped: Platform, tmp_path: Path) -> None:
    capped.paas("apps:create", "longname")
    repo = app_repo(tmp_path, "procfile-only")
    commit_file_at(repo, b"n" * (2 * 1024 * 1024))
    result = push(capped, repo, "longname")
    assert result.returncode != 0, result.stderr
    assert "a path in the pushed tree is longer than 4096 bytes: nnn" in result.stderr
    assert "! [remote rejected] main -> main" in result.stderr
    assert "Build" not in result.stderr
    # the platform keeps taking pushes
    good = app_repo(tmp_path / "good", "procfile-only")
    assert push(capped, good, "longname").returncode == 0
