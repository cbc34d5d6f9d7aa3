"""Builds' disks: a build that writes past its disk (the workspace, PAAS_BUILD_DISK_MB, or its
layers in the app's cache, PAAS_BUILD_CACHE_MB) fails with a message naming the limit; the
host, a running app and the next build of another app do not notice; no loop device or mount
of the platform is left behind."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.platform import Platform, app_repo, git, second_subnet

pytestmark = pytest.mark.e2e
DISK_MB = 64


@pytest.fixture(scope="module")
def small_disks() -> Iterator[Platform]:
    """A platform of this module's own whose builds get 64 MB disks."""
    platform = Platform.create(PAAS_DYNO_SUBNET=second_subnet(),
                               PAAS_BUILD_DISK_MB=str(DISK_MB), PAAS_BUILD_CACHE_MB=str(DISK_MB))
    try:
        platform.up()
        yield platform
    finally:
        platform.down()


def push_filler(platform: Platform, tmp: Path, fill: str | None,
                megabytes: int = 0) -> tuple[str, subprocess.CompletedProcess[str]]:
    app = f"fill-{fill or 'none'}-{uuid.uuid4().hex[:5]}"
    platform.paas("apps:create", app)
    if fill:
        platform.paas("config:set", f"FILL={fill}", f"FILL_MB={megabytes}", "-a", app)
    repo = app_repo(tmp / app, "disk-filler")
    return app, git(repo, "push", platform.remote_url(app), "main", check=False)


def leftovers(platform: Platform) -> list[str]:
    """Loop devices backed by, and mounts under, the platform's builds or caches (the kernel
    detaches an unmounted loop device shortly after, not at once)."""
    deadline = time.monotonic() + 5
    while (found := _leftovers(platform)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return found


def _leftovers(platform: Platform) -> list[str]:
    home = str(platform.home.resolve())
    loops = subprocess.run(["losetup", "--list", "--noheadings", "--output", "NAME,BACK-FILE"],
                           capture_output=True, text=True, check=True).stdout.splitlines()
    mounts = Path("/proc/mounts").read_text().splitlines()
    return [line for line in loops + mounts
            if f"{home}/builds" in line or f"{home}/cache" in line]


@pytest.mark.parametrize(("fill", "setting"), [("app", "PAAS_BUILD_DISK_MB"),
                                               ("layer", "PAAS_BUILD_CACHE_MB")])
def test_a_build_that_fills_its_disk_fails_and_nothing_else_notices(
        small_disks: Platform, tmp_path: Path, fill: str, setting: str) -> None:
    running, result = push_filler(small_disks, tmp_path, None)
    assert result.returncode == 0, result.stderr
    small_disks.wait_for(running, "disk filler")

    started = time.monotonic()
    filler, result = push_filler(small_disks, tmp_path, fill, megabytes=DISK_MB * 2)
    assert result.returncode != 0, result.stderr
    assert "! [remote rejected] main -> main" in result.stderr
    assert "the build ran out of disk space" in result.stderr
    assert f"{DISK_MB} MB" in result.stderr and f"({setting})" in result.stderr
    assert "-----> filler buildpack done" not in result.stderr
    assert time.monotonic() - started < 120

    small_disks.wait_for(running, "disk filler")
    after, result = push_filler(small_disks, tmp_path, None)
    assert result.returncode == 0, result.stderr
    small_disks.wait_for(after, "disk filler")
    assert leftovers(small_disks) == []
    for app in (running, filler, after):
        small_disks.paas("apps:destroy", app, "--confirm", app)
    assert not list((small_disks.home / "cache").glob("*.img"))


def test_a_build_within_its_disk_is_unaffected(small_disks: Platform, tmp_path: Path) -> None:
    app, result = push_filler(small_disks, tmp_path, "layer", megabytes=DISK_MB // 4)
    assert result.returncode == 0, result.stderr
    assert "-----> filler buildpack done" in result.stderr
    assert leftovers(small_disks) == []
    small_disks.paas("apps:destroy", app, "--confirm", app)
