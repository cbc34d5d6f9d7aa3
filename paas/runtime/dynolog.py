"""A dyno's output file on disk (`dynos/<id>/output.log`): how much of it the agent shipped to
the app's log stream (the `shipped` offset file beside it), and its bound.

The file is written by the container's own processes (their stdout and stderr are the file,
opened O_APPEND by the dyno's monitor), so no platform process sits in between to rotate it.
The agent, which reads it, bounds it: once more than `max_bytes` of it are shipped, the shipped
head is cut off with fallocate(FALLOC_FL_COLLAPSE_RANGE), keeping KEEP_BYTES before the shipped
offset (a crash report's output tail reads the end). Collapsing is atomic with respect to the
writers' appends, so no line is lost. A filesystem that cannot collapse gets the head punched
out instead (FALLOC_FL_PUNCH_HOLE: the apparent size grows, the disk use stays bounded).

The offset is rewritten before the collapse: an agent killed between the two ships the cut
part again (duplicates) rather than skipping new output.
"""

from __future__ import annotations

import ctypes
import errno
import os
from pathlib import Path

FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02
FALLOC_FL_COLLAPSE_RANGE = 0x08
KEEP_BYTES = 64 * 1024

_libc = ctypes.CDLL(None, use_errno=True)
_libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong]


def complete(chunk: bytes, final: bool, limit: int) -> bytes:
    """What of a chunk read at the shipped offset to ship now: whole lines only, unless the
    dyno has ended or one line fills the whole chunk (it would never be shipped otherwise)."""
    if final or (len(chunk) >= limit and b"\n" not in chunk):
        return chunk
    return chunk[: chunk.rfind(b"\n") + 1]


def _fallocate(fd: int, mode: int, offset: int, length: int) -> None:
    if _libc.fallocate(fd, mode, offset, length) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


class DynoLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset_file = path.with_name("shipped")

    def offset(self) -> int:
        try:
            offset = int(self.offset_file.read_text() or 0)
        except (FileNotFoundError, ValueError):
            return 0
        # A file shorter than what was shipped was cut by someone else: start over.
        return offset if offset <= self._size() else 0

    def set_offset(self, offset: int) -> None:
        tmp = self.offset_file.with_suffix(".tmp")
        tmp.write_text(str(offset))
        tmp.replace(self.offset_file)

    def read(self, final: bool, limit: int) -> tuple[int, bytes]:
        """(offset, the bytes to ship from there); FileNotFoundError if the log is gone."""
        offset = self.offset()
        with self.path.open("rb") as f:
            f.seek(offset)
            return offset, complete(f.read(limit), final, limit)

    def bound(self, max_bytes: int) -> int:
        """Cuts the shipped head once more than max_bytes were shipped; returns the bytes
        cut (0 if none, or if only punched out)."""
        offset = self.offset()
        if offset <= max_bytes:
            return 0
        block = max(os.statvfs(self.path).f_bsize, 512)
        cut = (offset - KEEP_BYTES) // block * block
        if cut <= 0:
            return 0
        fd = os.open(self.path, os.O_WRONLY)
        try:
            self.set_offset(offset - cut)
            try:
                _fallocate(fd, FALLOC_FL_COLLAPSE_RANGE, 0, cut)
                return cut
            except OSError as error:
                self.set_offset(offset)
                if error.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                    raise
            _fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, cut)
            return 0
        finally:
            os.close(fd)

    def tail(self, size: int) -> bytes:
        """The last `size` bytes, without reading the whole file."""
        try:
            with self.path.open("rb") as f:
                f.seek(max(self._size() - size, 0))
                return f.read(size)
        except FileNotFoundError:
            return b""

    def _size(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0
