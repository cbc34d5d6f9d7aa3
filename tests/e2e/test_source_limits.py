"""A small pack of a huge tree: refused by the receiver before any build, with the setting
named, and neither the API nor the worker holds the tree in memory; a tree just under the
limit builds and deploys, with the same bounded memory."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.platform import Platform, app_repo, commit_all, git
from tests.services import PeakSampler, hwm_mb, service_pids

pytestmark = pytest.mark.e2e

CAP_MB = 300
# What the API and the worker may grow by while they take a push and build it: far below the
# tree's size (the code before streamed nothing: the API held the tree twice, the worker once).
GROWTH_BOUND_MB = 150


@pytest.fixture(scope="module")
def capped() -> Iterator[Platform]:
    platform = Platform.create(PAAS_MAX_SOURCE_MB=str(CAP_MB), PAAS_MAX_SOURCE_FILE_MB="1024")
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


class Memory:
    """The API's and the worker's memory: their high-water marks (VmHWM, every process of
    the service) before and after, and the peak of each process tree sampled meanwhile."""

    def __init__(self, platform: Platform) -> None:
        pids = service_pids(platform)
        self.pids = {name: pids[name] for name in ("api", "worker")}
        self.before = {name: hwm_mb(pid) for name, pid in self.pids.items()}
        self.sampler = PeakSampler(self.pids)

    def __enter__(self) -> Memory:
        self.sampler.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.sampler.__exit__()

    def assert_bounded(self) -> None:
        for name, pid in self.pids.items():
            grown = max(hwm_mb(pid), self.sampler.peaks[name]) - self.before[name]
            print(f"{name}: {self.before[name]:.0f} MB before, grew by {grown:.0f} MB")
            assert grown < GROWTH_BOUND_MB, (
                f"{name} grew by {grown:.0f} MB (before {self.before[name]:.0f} MB, "
                f"sampled peak {self.sampler.peaks[name]:.0f} MB)")


def test_a_tree_over_the_cap_is_refused_before_a_build_with_bounded_memory(
        capped: Platform, tmp_path: Path) -> None:
    capped.paas("apps:create", "zeros")
    repo = app_repo(tmp_path, "procfile-only")
    zeros(repo / "zeros.bin", 600)
    commit_all(repo, "600 MB of zeros")
    assert os.path.getsize(repo / "zeros.bin") == 600 << 20

    with Memory(capped) as memory:
        result = push(capped, repo, "zeros")
    assert result.returncode != 0, result.stderr
    message = f"the pushed tree unpacks to more than {CAP_MB} MB (PAAS_MAX_SOURCE_MB)"
    assert message in result.stderr
    assert "! [remote rejected] main -> main" in result.stderr
    assert "Build" not in result.stderr  # refused by the receiver: no build was queued
    memory.assert_bounded()
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

    with Memory(capped) as memory:
        result = push(capped, repo, "nearly")
    assert result.returncode == 0, result.stderr
    memory.assert_bounded()
    capped.wait_for("nearly", "Hello from a Procfile-only app")
