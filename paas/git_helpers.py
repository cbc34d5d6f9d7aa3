"""The C git processes the API runs on pushed objects (index-pack, ls-tree, cat-file)."""

from __future__ import annotations

import contextlib
from pathlib import Path


def first_to_go(pid: int) -> None:
    """Makes a git helper the OOM killer's first choice in the API's memory cgroup: a pack
    that takes more memory than the API may use costs that push, not the API. Set before
    the helper is fed any input, so before it can grow."""
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/oom_score_adj").write_text("1000")
