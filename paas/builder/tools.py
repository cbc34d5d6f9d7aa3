"""Tools of the platform's own that builds use: uv, bound read-only into every build container.

uv is pinned in pyproject.toml, so `make setup` installs it into the platform's virtualenv
(its scripts dir, root's). The binary bound is that file itself, resolved and checked here by
root before any build runs: never a path that a build (or anyone but its owner) can write.
"""

from __future__ import annotations

import os
import stat
import sysconfig
from pathlib import Path

UV_MOUNT = "/cnb/tools/uv"


def platform_uv(scripts: Path | None = None) -> Path | None:
    """The platform's uv binary, or None when it is missing or anyone else could change it."""
    candidate = (scripts or Path(sysconfig.get_path("scripts"))) / "uv"
    try:
        path = candidate.resolve(strict=True)
        st = path.stat()
    except (OSError, RuntimeError):
        return None
    if not stat.S_ISREG(st.st_mode) or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return None
    if st.st_uid not in (0, os.geteuid()) or not st.st_mode & stat.S_IXUSR:
        return None
    return path
