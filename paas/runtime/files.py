"""Root's own files in a dyno's directory, read and written without ever following a symlink
(O_NOFOLLOW on the last component; the directories above are root's, 0700). Writes go to a
temporary file renamed over the target, and rename replaces a symlink rather than following it.
Kept free of imports beyond the standard library: the dyno monitors load it."""

from __future__ import annotations

import os
from pathlib import Path

NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC


def write_atomic(path: Path, text: str, mode: int = 0o600) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | NOFOLLOW, mode)
    try:
        os.fchmod(fd, mode)
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)


def read_text(path: Path, limit: int = 1 << 20) -> str:
    """The start of a small file (FileNotFoundError if absent; ELOOP for a symlink)."""
    fd = os.open(path, os.O_RDONLY | NOFOLLOW)
    try:
        return os.read(fd, limit).decode(errors="replace")
    finally:
        os.close(fd)


def open_read(path: Path) -> int:
    return os.open(path, os.O_RDONLY | NOFOLLOW)


def open_append(path: Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | NOFOLLOW, 0o600)
