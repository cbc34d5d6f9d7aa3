"""PAAS_HOME: writable, root's own, and with room (free space and inodes) for repositories,
layers, builds and dyno logs."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

from paas.doctor import Finding, passed, problem
from paas.settings import Settings

AREA = "disk"
MIN_FREE_MB = 256  # below: a build or a push would fail at once
LOW_FREE_MB = 2048  # below: say so, a few builds fill it
MIN_FREE_INODES = 10000


def check(settings: Settings) -> Iterator[Finding]:
    home = _existing(settings.home)
    yield _writable(settings.home, home)
    yield _owner(settings.home, home)
    yield from _room(settings.home, home)


def _existing(path: Path) -> Path:
    """path, or its nearest parent that exists (PAAS_HOME before the first `paas up`)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _writable(home: Path, existing: Path) -> Finding:
    if os.statvfs(existing).f_flag & os.ST_RDONLY:
        return problem(AREA, "PAAS_HOME writable", f"{existing} is on a read-only filesystem",
                       "mount it read-write, or set PAAS_HOME to a writable directory")
    if not os.access(existing, os.W_OK):
        return problem(AREA, "PAAS_HOME writable", f"{existing} is not writable by this user",
                       "run paas as root, or set PAAS_HOME to a directory root owns")
    return passed(AREA, "PAAS_HOME writable", f"{home} can be written")


def _owner(home: Path, existing: Path) -> Finding:
    info = existing.stat()
    if info.st_uid != 0 and os.geteuid() == 0:
        return problem(AREA, "PAAS_HOME owner", f"{existing} belongs to uid {info.st_uid}, "
                       "who could change what the platform's root processes read",
                       f"chown root:root {existing}")
    if existing == home and info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return problem(AREA, "PAAS_HOME owner", f"{home} is writable by group or others "
                       f"(mode {stat.S_IMODE(info.st_mode):o})", f"chmod 711 {home} (paas up does)",
                       fatal=False)
    return passed(AREA, "PAAS_HOME owner", f"{existing} is root's own")


def _room(home: Path, existing: Path) -> Iterator[Finding]:
    fs = os.statvfs(existing)
    free_mb = fs.f_bavail * fs.f_frsize // (1024 * 1024)
    where = f"{free_mb} MB free under {existing}"
    if free_mb < MIN_FREE_MB:
        yield problem(AREA, "free disk", f"only {where}: builds and pushes would fail",
                      f"free space on that filesystem (du -sh {existing}/*), or move PAAS_HOME")
    elif free_mb < LOW_FREE_MB:
        yield problem(AREA, "free disk", f"only {where}: a few builds fill it",
                      "free space, or prune old releases (paas releases)", fatal=False)
    else:
        yield passed(AREA, "free disk", where)
    if fs.f_files and fs.f_favail < MIN_FREE_INODES:
        yield problem(AREA, "free inodes", f"only {fs.f_favail} inodes free under {existing}",
                      "remove many small files there, or move PAAS_HOME to a filesystem with "
                      "more inodes")
    else:
        yield passed(AREA, "free inodes", f"{fs.f_favail} inodes free under {existing}")
