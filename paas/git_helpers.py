"""The C git processes the API runs on pushed objects (index-pack, ls-tree, cat-file)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def first_to_go(pid: int) -> None:
    """Makes a git helper the OOM killer's first choice in the API's memory cgroup: a pack
    that takes more memory than the API may use costs that push, not the API. Set before
    the helper is fed any input, so before it can grow."""
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/oom_score_adj").write_text("1000")


def git_env(repo: Path, objects: Path | None = None) -> dict[str, str]:
    """A git environment that reads no user or system configuration."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "GIT_DIR": str(repo),
           "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null", "HOME": str(repo),
           "LANG": "C", "LC_ALL": "C"}
    if objects is not None:
        env["GIT_OBJECT_DIRECTORY"] = str(objects)
        env["GIT_ALTERNATE_OBJECT_DIRECTORIES"] = str(repo / "objects")
    return env
