"""Build disks (paas/builder/disk.py) with real loop devices, mkfs.ext4 and mount."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from paas.builder import disk, orphans
from paas.runtime import host
from paas.settings import Settings


@pytest.fixture
def settings() -> Iterator[Settings]:
    base = Path(tempfile.mkdtemp(prefix="paas-disk-", dir="/tmp"))
    settings = Settings(home=base / "home", build_disk_mb=32, build_cache_mb=32,
                        build_timeout=60)
    settings.builds_dir.mkdir(parents=True)
    try:
        yield settings
    finally:
        for point in host.mounts_under(base):
            host.unmount(point)
        shutil.rmtree(base)


def mounted(path: Path) -> bool:
    return disk.is_mounted(path)


def no_loops_left(settings: Settings) -> bool:
    """The kernel detaches an autoclear loop device shortly after its unmount, not during."""
    deadline = time.monotonic() + 5
    while disk.loop_devices_under(settings.home) and time.monotonic() < deadline:
        time.sleep(0.05)
    return disk.loop_devices_under(settings.home) == []


def test_a_workspace_is_its_own_size_limited_filesystem_and_goes(settings: Settings) -> None:
    root = settings.builds_dir / "build-test"
    with disk.workspace(settings, root):
        assert mounted(root)
        st = os.statvfs(root)
        assert 28 * 1024 * 1024 < st.f_blocks * st.f_frsize <= 32 * 1024 * 1024
        assert oct(root.stat().st_mode & 0o777) == "0o711"
        with pytest.raises(OSError, match="No space left"), open(root / "big", "wb") as f:
            f.write(b"\0" * 40 * 1024 * 1024)
        assert disk.is_full(root)
        assert "nosuid" in _options(root) and "nodev" in _options(root)
    assert not root.exists() and not disk.image_of(root).exists()
    assert no_loops_left(settings)


def _options(path: Path) -> str:
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        if line.split()[4] == str(path.resolve()):
            return line.split()[5]
    return ""


def test_full_means_a_few_megabytes_left_not_a_fraction_of_the_disk(settings: Settings) -> None:
    """A build that used 98.5 % of a 1 GB disk and failed for another reason is not told it
    ran out of space."""
    root = settings.builds_dir / "build-nearly-full"
    with disk.workspace(replace(settings, build_disk_mb=1024), root):
        fd = os.open(root / "used", os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            st = os.statvfs(root)
            os.posix_fallocate(fd, 0, st.f_bavail * st.f_frsize - 16 * 1024 * 1024)
            assert not disk.is_full(root)
            os.posix_fallocate(fd, 0, os.fstat(fd).st_size + 14 * 1024 * 1024)
            assert disk.is_full(root)
        finally:
            os.close(fd)


def test_a_workspace_goes_when_the_build_raises(settings: Settings) -> None:
    root = settings.builds_dir / "build-raises"
    with pytest.raises(RuntimeError), disk.workspace(settings, root):
        raise RuntimeError("a failed build")
    assert not root.exists() and not disk.image_of(root).exists()


def test_the_cache_persists_between_builds_and_goes_with_the_app(settings: Settings) -> None:
    cache_dir = disk.app_cache_dir(settings, "app-one")
    with disk.cache(settings, cache_dir):
        (cache_dir / "kept").write_text("cached")
    assert not mounted(cache_dir) and disk.image_of(cache_dir).is_file()
    with disk.cache(settings, cache_dir):
        assert (cache_dir / "kept").read_text() == "cached"
    lines: list[str] = []
    with disk.cache(replace(settings, build_cache_mb=48), cache_dir, lines.append):
        assert not (cache_dir / "kept").exists()
    assert any("PAAS_BUILD_CACHE_MB" in line for line in lines)
    disk.remove_app_cache(settings, "app-one")
    assert not cache_dir.exists() and not disk.image_of(cache_dir).exists()


def test_an_app_destroyed_during_its_build(settings: Settings) -> None:
    """apps:destroy removes the cache image at once; the running build keeps its mount to the
    end, and leaves neither its mount point nor its loop device behind."""
    cache_dir = disk.app_cache_dir(settings, "app-gone")
    with disk.cache(settings, cache_dir):
        disk.remove_app_cache(settings, "app-gone")
        assert mounted(cache_dir)
        (cache_dir / "still-writable").write_text("yes")
    assert not cache_dir.exists() and not disk.image_of(cache_dir).exists()
    assert no_loops_left(settings)
    disk.remove_app_cache(settings, "app-gone")  # a second destroy finds nothing, and is fine


def test_a_dead_workers_mount_is_taken_over(settings: Settings) -> None:
    cache_dir = disk.app_cache_dir(settings, "app-two")
    with disk.cache(settings, cache_dir):
        (cache_dir / "kept").write_text("cached")
        with disk.cache(settings, cache_dir):  # as the next build after a killed worker
            assert (cache_dir / "kept").read_text() == "cached"
    assert not mounted(cache_dir)


def test_the_orphan_sweep_removes_a_killed_builds_disk(settings: Settings) -> None:
    root = settings.builds_dir / "build-killed"
    root.mkdir(mode=0o711)
    disk._make_image(disk.image_of(root), 32, journal=False)
    disk._mount(disk.image_of(root), root)
    old = time.time() - settings.build_timeout - 600
    os.utime(root, (old, old))
    fresh = settings.builds_dir / "build-running"
    fresh.mkdir()
    orphans._remove_stale_workspaces(settings)
    assert not root.exists() and not disk.image_of(root).exists()
    assert not disk.lock_of(root).exists()
    assert no_loops_left(settings)
    assert fresh.is_dir()


def test_the_sweep_leaves_a_live_builds_workspace_however_old(settings: Settings) -> None:
    """Packing a big slug has no time limit: a workspace whose lock a build holds stays, even
    long past the build timeout; a killed worker's temporary disk images go."""
    old = time.time() - settings.build_timeout - 600
    live = settings.builds_dir / "build-packing"
    with disk.workspace(settings, live):
        (live / "app").mkdir()
        os.utime(live, (old, old))
        os.utime(disk.image_of(live), (old, old))
        os.utime(disk.lock_of(live), (old, old))
        temp_images = [settings.builds_dir / ".build-killed.img.4242.tmp",
                       settings.home / "cache" / ".app-killed.img.4242.tmp"]
        for path in temp_images:
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(b"half an image")
            os.utime(path, (old, old))
        orphans._remove_stale_workspaces(settings)
        assert mounted(live) and (live / "app").is_dir() and disk.image_of(live).is_file()
        assert disk.lock_of(live).exists()
        assert not any(path.exists() for path in temp_images)
    assert sorted(settings.builds_dir.iterdir()) == []


def test_sizes_are_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAAS_BUILD_DISK_MB", "2G")
    with pytest.raises(ValueError, match=r"PAAS_BUILD_DISK_MB=.2G.: must be a whole number"):
        Settings()
    monkeypatch.setenv("PAAS_BUILD_DISK_MB", "8")
    with pytest.raises(ValueError, match="at least 16"):
        Settings()
    monkeypatch.setenv("PAAS_BUILD_DISK_MB", "0")
    assert Settings().build_disk_mb == 0


def test_loops_of_deleted_images_are_detached_others_stay(settings: Settings) -> None:
    gone, kept = settings.builds_dir / "gone.img", settings.builds_dir / "kept.img"
    devices = []
    for image in (gone, kept):
        disk._make_image(image, 16, journal=False)
        devices.append(subprocess.run(["losetup", "--find", "--show", str(image)],
                                      capture_output=True, text=True, check=True).stdout.strip())
    try:
        gone.unlink()
        disk.detach_unused_loops(settings.home)
        assert [device for device, _ in disk.loop_devices_under(settings.home)] == [devices[1]]
    finally:
        for device, _ in disk.loop_devices_under(settings.home):
            subprocess.run(["losetup", "--detach", device], check=False)
    assert no_loops_left(settings)
