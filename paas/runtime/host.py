"""Host-side filesystem work: mounts, ownership, cgroup directories."""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path

from paas.errors import Unavailable

CGROUP_V1 = Path("/sys/fs/cgroup")


def mounts_under(root: Path) -> list[Path]:
    """Mount points at or below root, deepest first."""
    prefix = str(root.resolve())
    found = []
    with open("/proc/self/mountinfo") as info:
        for line in info:
            point = line.split()[4].encode().decode("unicode_escape")
            if point == prefix or point.startswith(prefix + "/"):
                found.append(Path(point))
    return sorted(set(found), key=lambda p: len(p.parts), reverse=True)


def unmount(target: Path) -> None:
    if not target.exists():
        return
    for point in mounts_under(target):
        result = subprocess.run(["umount", str(point)], capture_output=True, check=False)
        if result.returncode != 0:
            subprocess.run(["umount", "-l", str(point)], capture_output=True, check=False)
    if mounts_under(target):
        raise Unavailable(f"cannot unmount {target}")


def chown_tree(root: Path, uid: int) -> None:
    os.lchown(root, uid, uid)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            os.lchown(os.path.join(dirpath, name), uid, uid)


def remove_cgroups(name: str) -> None:
    """rmdir every cgroup directory called `name` (and its children) in each v1 hierarchy."""
    if not CGROUP_V1.is_dir():
        return
    for hierarchy in CGROUP_V1.iterdir():
        top = hierarchy / name
        if not top.is_dir():
            continue
        for dirpath, _, _ in sorted(os.walk(top), key=lambda w: len(w[0]), reverse=True):
            with contextlib.suppress(OSError):
                os.rmdir(dirpath)
