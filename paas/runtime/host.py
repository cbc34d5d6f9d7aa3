"""Host-side filesystem work: mounts, ownership (cgroups: paas/cgroups.py)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from paas import safefs
from paas.errors import Invalid, Unavailable


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
    """root and everything below it to uid:uid. A build wrote the tree: it is walked by
    directory fd and a symlink is chowned itself, never followed (root's parent is trusted)."""
    try:
        with safefs.opened_dir(root.parent, root.name) as fd:
            os.fchown(fd, uid, uid)
        for entry in safefs.walk(root.parent, root.name):
            os.chown(entry.name, uid, uid, dir_fd=entry.dir_fd, follow_symlinks=False)
    except safefs.UnsafePath as err:
        raise Invalid(f"cannot give the build its files: {err}") from None
