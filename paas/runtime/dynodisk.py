"""A dyno's ephemeral filesystem (Heroku's): a tmpfs of the dyno size's disk at
`dynos/<id>/disk`, holding `/app`'s writable layer (overlayfs upper and work dirs), the overlay
of the slug's layers over it, and the container's small root filesystem.

Being tmpfs, what a dyno writes never reaches the host's disk: the kernel charges each page to
the memory cgroup of the process that first touches it (the dyno's own process, through the
overlay), so files written count as the dyno's memory, and a dyno that fills its disk gets
ENOSPC. Unmounting it (`host.unmount` of the dyno's directory) frees everything at once; root
never walks what the dyno wrote.

Mount paths seen inside a dyno (`/proc/self/mountinfo`) are neutral: the overlay is mounted
from within the tmpfs with relative names (`lowerdir=l0:l1,upperdir=upper,workdir=work`, shown
as given), `l0`... being symlinks to the unpacked layers that root makes in a directory no dyno
can write; the root filesystem shows as `/rootfs` of that tmpfs. Nothing names PAAS_HOME, a
layer digest or an app's uid.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from paas.errors import Invalid, Unavailable

# The tmpfs root: root's only (upper is the dyno's, through the overlay).
MOUNT_OPTIONS = "mode=0700,nosuid,nodev"


@dataclass(frozen=True)
class DynoDisk:
    root: Path  # the tmpfs mount point

    @property
    def upper(self) -> Path:
        return self.root / "upper"

    @property
    def work(self) -> Path:
        return self.root / "work"

    @property
    def app(self) -> Path:
        """The overlay: bound at /app in the container."""
        return self.root / "app"

    @property
    def rootfs(self) -> Path:
        return self.root / "rootfs"


def create(root: Path, size_mb: int, uid: int, layers: list[Path]) -> DynoDisk:
    """Mounts the dyno's disk and its /app overlay (the first layer on top)."""
    if size_mb <= 0:
        raise Invalid(f"a dyno's disk needs a size, got {size_mb} MB")
    for layer in layers:
        if not layer.is_dir():
            raise Invalid(f"layer {layer} is not a directory")
    root.mkdir(mode=0o700)
    _mount(["-t", "tmpfs", "-o", f"size={size_mb}m,{MOUNT_OPTIONS}", "tmpfs", str(root)])
    disk = DynoDisk(root)
    for path in (disk.upper, disk.work, disk.app):
        path.mkdir(mode=0o700)
    os.chown(disk.upper, uid, uid)
    disk.upper.chmod(0o755)
    names = []
    for index, layer in enumerate(layers):
        (root / f"l{index}").symlink_to(layer.resolve())
        names.append(f"l{index}")
    options = f"lowerdir={':'.join(names)},upperdir=upper,workdir=work"
    # Relative names, resolved in the tmpfs (cwd): mountinfo shows them as given.
    _mount(["-t", "overlay", "overlay", "-o", options, str(disk.app)], cwd=root)
    return disk


def _mount(args: list[str], cwd: Path | None = None) -> None:
    result = subprocess.run(["mount", *args], capture_output=True, text=True, check=False,
                            cwd=cwd, timeout=60)
    if result.returncode != 0:
        raise Unavailable(f"mount {args[-1]} failed: {result.stderr.strip()}")
