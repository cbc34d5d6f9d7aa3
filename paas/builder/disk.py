"""Builds' disks: each build workspace and each app's build cache is an ext4 filesystem image
of a fixed size, loop-mounted nosuid,nodev, so that a build fills its own disk and never the
host's (the root filesystem has no project quotas).

    <builds_dir>/build-<hex>.img   the workspace's image (sparse, no journal), mounted at
    <builds_dir>/build-<hex>/      for the build's lifetime, then unmounted and deleted
    <home>/cache/<app>.img         the app's cache (sparse, journaled), kept between builds and
    <home>/cache/<app>/            mounted only while a build of the app runs (one at a time)

`mount -o loop` sets the loop device's autoclear flag: unmounting detaches it.
A setting of 0 MB uses plain directories instead (no limit), for hosts without loop devices.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from paas.runtime import host
from paas.settings import Settings

DISK_SETTING = "PAAS_BUILD_DISK_MB"
CACHE_SETTING = "PAAS_BUILD_CACHE_MB"
_COMMAND_TIMEOUT = 60
_MOUNT_OPTIONS = "loop,nosuid,nodev,noatime"
# Full, for a build: less than this many bytes or inodes left. A fraction of the disk would
# call a build that merely used most of a large disk (and failed otherwise) out of space.
_FULL_BYTES = 4 * 1024 * 1024
_FULL_INODES = 64


class DiskError(Exception):
    """A build disk cannot be made or mounted; the message says what the host lacks."""


def image_of(mountpoint: Path) -> Path:
    return mountpoint.with_name(f"{mountpoint.name}.img")


def app_cache_dir(settings: Settings, app: str) -> Path:
    return settings.home / "cache" / app


def _run(command: list[str]) -> None:
    try:
        done = subprocess.run(command, capture_output=True, text=True,
                              timeout=_COMMAND_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise DiskError(f"{command[0]} failed: {err}") from None
    if done.returncode != 0:
        reason = " ".join((done.stderr or done.stdout).split())[-300:]
        raise DiskError(f"{command[0]} failed: {reason or f'exit status {done.returncode}'}")


def _make_image(image: Path, size_mb: int, *, journal: bool) -> None:
    """A sparse image holding an empty ext4 filesystem, renamed into place when complete."""
    tmp = image.with_name(f".{image.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            os.ftruncate(fd, size_mb * 1024 * 1024)
        finally:
            os.close(fd)
        features = [] if journal else ["-O", "^has_journal"]
        _run(["mkfs.ext4", "-q", "-F", "-m", "0", "-i", "8192", *features,
              "-E", "lazy_itable_init=1,lazy_journal_init=1,nodiscard", str(tmp)])
        tmp.rename(image)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _mount(image: Path, mountpoint: Path) -> None:
    try:
        _run(["mount", "-t", "ext4", "-o", _MOUNT_OPTIONS, str(image), str(mountpoint)])
    except DiskError as err:
        raise DiskError(f"cannot mount the build disk {image.name} ({err}); builds need loop "
                        f"devices, or {DISK_SETTING}=0 and {CACHE_SETTING}=0") from None


def is_mounted(path: Path) -> bool:
    return path.exists() and path.resolve() in host.mounts_under(path)


def unmount(mountpoint: Path) -> None:
    """Unmount if mounted (lazily when busy); a missing mount point is fine."""
    if is_mounted(mountpoint):
        host.unmount(mountpoint)


@contextmanager
def workspace(settings: Settings, root: Path) -> Iterator[None]:
    """root as a fresh filesystem of PAAS_BUILD_DISK_MB; gone (unmounted, deleted) after.
    Its lock is held all along: the orphan sweep leaves it alone however long packing takes."""
    image = image_of(root)
    with held(root):
        try:
            root.mkdir(mode=0o711)
            if settings.build_disk_mb:
                _make_image(image, settings.build_disk_mb, journal=False)
                _mount(image, root)
                root.chmod(0o711)
            yield
        finally:
            remove_workspace(root)


def lock_of(workspace: Path) -> Path:
    return workspace.with_name(f"{workspace.name}.lock")


def _open_lock(workspace: Path) -> int:
    return os.open(lock_of(workspace), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                   0o600)


@contextmanager
def held(workspace: Path) -> Iterator[None]:
    """The workspace's lock (a file next to it: a mount would hide a lock on the directory)
    for as long as a build uses it; the kernel releases it when the worker dies."""
    while True:
        fd = _open_lock(workspace)
        fcntl.flock(fd, fcntl.LOCK_EX)
        if _is_at_path(fd, lock_of(workspace)):
            break
        os.close(fd)  # a sweep removed this lock file while it was waited for
    try:
        yield
    finally:
        lock_of(workspace).unlink(missing_ok=True)
        os.close(fd)


def _is_at_path(fd: int, path: Path) -> bool:
    try:
        st = path.lstat()
    except FileNotFoundError:
        return False
    return (st.st_dev, st.st_ino) == (os.fstat(fd).st_dev, os.fstat(fd).st_ino)


@contextmanager
def unless_held(workspace: Path) -> Iterator[bool]:
    """True, holding the workspace's lock, when no live build holds it; False otherwise.
    Whoever gets it removes the workspace, and the lock file goes after."""
    fd = _open_lock(workspace)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
        lock_of(workspace).unlink(missing_ok=True)
    finally:
        os.close(fd)


def remove_workspace(root: Path) -> None:
    with suppress(OSError):
        unmount(root)
    if not is_mounted(root):
        shutil.rmtree(root, ignore_errors=True)
    image_of(root).unlink(missing_ok=True)


@contextmanager
def cache(settings: Settings, cache_dir: Path,
          log: Callable[[str], None] = lambda _line: None) -> Iterator[None]:
    """The app's cache filesystem mounted at cache_dir for one build (the caller holds the
    app's build lock: a mount found there is a dead worker's, and goes)."""
    size = settings.build_cache_mb
    cache_dir.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not size:
        cache_dir.mkdir(exist_ok=True, mode=0o700)
        yield
        return
    unmount(cache_dir)
    _prepare_cache_image(cache_dir, size, log)
    try:
        _mount(image_of(cache_dir), cache_dir)
    except DiskError:
        log("-----> The build cache could not be mounted and starts empty")
        image_of(cache_dir).unlink(missing_ok=True)
        _prepare_cache_image(cache_dir, size, log)
        _mount(image_of(cache_dir), cache_dir)
    try:
        cache_dir.chmod(0o700)
        yield
    finally:
        with suppress(OSError):
            unmount(cache_dir)
        if not image_of(cache_dir).exists():  # the app was destroyed during the build
            remove_app_cache(settings, cache_dir.name)


def _prepare_cache_image(cache_dir: Path, size_mb: int, log: Callable[[str], None]) -> None:
    image = image_of(cache_dir)
    with suppress(FileNotFoundError):  # apps:destroy may remove it at any time
        if image.stat().st_size != size_mb * 1024 * 1024:
            log(f"-----> The build cache starts empty: its size limit changed ({CACHE_SETTING})")
            image.unlink(missing_ok=True)
    with suppress(FileNotFoundError):
        if cache_dir.is_dir() and not cache_dir.is_symlink() and any(cache_dir.iterdir()):
            # a cache from before build disks: a cache, so dropped
            shutil.rmtree(cache_dir, ignore_errors=True)
    cache_dir.mkdir(exist_ok=True, mode=0o700)
    if not image.exists():
        _make_image(image, size_mb, journal=True)


def remove_app_cache(settings: Settings, app: str) -> None:
    """The app's cache image goes with the app (a running build keeps its mount until done)."""
    cache_dir = app_cache_dir(settings, app)
    image_of(cache_dir).unlink(missing_ok=True)
    if cache_dir.is_dir() and not is_mounted(cache_dir):
        shutil.rmtree(cache_dir, ignore_errors=True)


def is_full(path: Path) -> bool:
    """Whether the filesystem at path has (nearly) no space or inodes left for a build."""
    try:
        st = os.statvfs(path)
    except OSError:
        return False
    free = st.f_bavail * st.f_frsize
    return free < _FULL_BYTES or (st.f_files > 0 and st.f_favail < _FULL_INODES)


def full_message(settings: Settings, workspace_full: bool, cache_full: bool) -> str:
    where = []
    if workspace_full or not cache_full:
        where.append(f"{settings.build_disk_mb} MB to /app ({DISK_SETTING})")
    if cache_full or not workspace_full:
        where.append(f"{settings.build_cache_mb} MB to its layers and cache in /app/.layers "
                     f"({CACHE_SETTING})")
    return ("the build ran out of disk space: a build may write " + " and ".join(where) +
            ". Write less at build time (clean up temporary files), or ask the operator to "
            "raise the limit; the app keeps its current release.")


def loop_devices_under(root: Path) -> list[tuple[str, str]]:
    """(device, backing file) of loop devices whose image is under root."""
    try:
        done = subprocess.run(["losetup", "--list", "--noheadings", "--output",
                               "NAME,BACK-FILE"], capture_output=True, text=True,
                              timeout=_COMMAND_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return []
    prefix = str(root.resolve()) + "/"
    found = []
    for line in done.stdout.splitlines():
        device, _, back = line.strip().partition(" ")
        back = back.strip().removesuffix(" (deleted)")
        if back.startswith(prefix):
            found.append((device, back))
    return found


def detach_unused_loops(root: Path) -> None:
    """Loop devices of deleted images under root that nothing mounts (a worker killed between
    attaching and mounting). One whose image exists may be a concurrent build's mount under
    way, and stays."""
    mounted = _mounted_sources()
    for device, back in loop_devices_under(root):
        if device not in mounted and not Path(back).exists():
            with suppress(DiskError):
                _run(["losetup", "--detach", device])


def _mounted_sources() -> set[str]:
    with open("/proc/self/mountinfo") as info:
        return {line.split(" - ", 1)[1].split()[1] for line in info if " - " in line}
