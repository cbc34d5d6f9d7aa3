"""A dyno's output file on disk (`dynos/<id>/output.log`): its writer, how much of it the agent
shipped to the app's log stream (the `shipped` file beside it), and its bounds.

The dyno's processes write to a pipe; their monitor is the file's only writer: `LogWriter` in
an attached one-off's (paas/runtime/piped.py), its C twin in every other dyno's
(paas/runtime/native/dyno-monitor.c, which keeps this file format and these bounds: change
both together). It keeps at most `limit` bytes not yet shipped on disk (the
agent may be stopped while a dyno floods its output): beyond that, output is dropped and
counted, and once there is room again a marker line (`DROPPED`, which no dyno can write: its
NUL bytes are replaced) takes its place, which the agent turns into Heroku's `Error L10 (Log
truncated)`. A write the host refuses (a full disk) is dropped the same way: a dyno never sees
its output fail.

The agent, which reads the file, bounds what was shipped: once more than `max_bytes` of it are
shipped, the shipped head is cut off with fallocate(FALLOC_FL_COLLAPSE_RANGE), keeping
KEEP_BYTES before the shipped offset (a crash report's output tail reads the end). Collapsing
is atomic with respect to the writer's appends, so no line is lost. A filesystem that cannot
collapse gets the head punched out instead (FALLOC_FL_PUNCH_HOLE: the apparent size grows, the
disk use stays bounded).

`shipped` holds the offset and the bytes cut so far; their sum, the bytes ever shipped, only
grows, which is what the writer compares its own count with. It is rewritten before the
collapse: an agent killed between the two ships the cut part again (duplicates) rather than
skipping new output.
"""

from __future__ import annotations

import ctypes
import errno
import os
import select
from pathlib import Path

from paas import safefs

FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02
FALLOC_FL_COLLAPSE_RANGE = 0x08
KEEP_BYTES = 64 * 1024
READ_SIZE = 64 * 1024
# What the writer puts in place of dropped output, followed by their count and a newline.
DROPPED = b"\x00paas:dropped "
NUL_STAND_IN = "\ufffd".encode()
MARKER_ROOM = 64
# A quiet dyno's dropped count is written within this long of there being room again.
QUIET_SECONDS = 1.0

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


def dropped_count(line: str) -> int | None:
    """The bytes a marker line says were dropped; None for a line of the dyno's."""
    prefix = DROPPED.decode()
    if not line.startswith(prefix):
        return None
    count = line[len(prefix):].strip()
    return int(count) if count.isdigit() else 0


class DynoLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset_file = path.with_name("shipped")

    def offset(self) -> int:
        offset = self._shipped()[0]
        # A file shorter than what was shipped was cut by someone else: start over.
        return offset if offset <= self._size() else 0

    def shipped_total(self) -> int:
        """Every byte ever shipped, those cut off included."""
        offset, cut = self._shipped()
        return offset + cut

    def cut(self) -> int:
        return self._shipped()[1]

    def set_offset(self, offset: int, cut: int | None = None) -> None:
        shipped = f"{offset} {self.cut() if cut is None else cut}"
        safefs.write_atomic(self.offset_file.parent, self.offset_file.name, shipped.encode())

    def read(self, final: bool, limit: int) -> tuple[int, bytes]:
        """(offset, the bytes to ship from there); FileNotFoundError if the log is gone."""
        offset = self.offset()
        fd = self._open(os.O_RDONLY)
        try:
            return offset, complete(os.pread(fd, limit, offset), final, limit)
        finally:
            os.close(fd)

    def bound(self, max_bytes: int) -> int:
        """Cuts the shipped head once more than max_bytes were shipped; returns the bytes
        cut (0 if none, or if only punched out)."""
        offset, cut_before = self.offset(), self.cut()
        if offset <= max_bytes:
            return 0
        block = max(os.statvfs(self.path).f_bsize, 512)
        cut = (offset - KEEP_BYTES) // block * block
        if cut <= 0:
            return 0
        fd = self._open(os.O_WRONLY)
        try:
            self.set_offset(offset - cut, cut_before + cut)
            try:
                _fallocate(fd, FALLOC_FL_COLLAPSE_RANGE, 0, cut)
                return cut
            except OSError as error:
                self.set_offset(offset, cut_before)
                if error.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                    raise
            _fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, cut)
            return 0
        finally:
            os.close(fd)

    def tail(self, size: int) -> bytes:
        """The last `size` bytes, without reading the whole file."""
        try:
            fd = self._open(os.O_RDONLY)
        except FileNotFoundError:
            return b""
        try:
            return os.pread(fd, size, max(os.fstat(fd).st_size - size, 0))
        finally:
            os.close(fd)

    def _shipped(self) -> tuple[int, int]:
        try:
            words = (safefs.read_file(self.offset_file.parent, self.offset_file.name)
                     or b"").split()
            return int(words[0]) if words else 0, int(words[1]) if len(words) > 1 else 0
        except (OSError, ValueError, safefs.UnsafePath):
            return 0, 0

    def _open(self, flags: int) -> int:
        return safefs.open_fd(self.path.parent, self.path.name, flags)

    def _size(self) -> int:
        try:
            return self.path.lstat().st_size
        except FileNotFoundError:
            return 0


class LogWriter:
    """Appends a dyno's output to its log, at most `limit` bytes ahead of what was shipped."""

    def __init__(self, log: DynoLog, limit: int) -> None:
        # At least one read and its marker, or nothing would ever fit.
        self.log, self.limit = log, max(limit, READ_SIZE + MARKER_ROOM)
        self.fd = safefs.open_append(log.path.parent, log.path.name)
        self.written = os.fstat(self.fd).st_size + log.cut()  # every byte ever appended
        self.shipped = log.shipped_total()  # as last read: it only grows
        self.dropped = 0
        self.line_open = False  # the last byte written was not a newline

    def write(self, data: bytes) -> None:
        data = data.replace(b"\x00", NUL_STAND_IN)
        if self.dropped and self._fits(len(data) + MARKER_ROOM):
            self._mark()
        if self.dropped or not self._fits(len(data)):
            self.dropped += len(data)
            return
        self._append(data)

    def quiet(self) -> None:
        """Nothing came for a while: the dropped count, if there is room for it now."""
        if self.dropped and self._fits(MARKER_ROOM):
            self._mark()

    def close(self) -> None:
        if self.dropped:
            self._mark()
        os.close(self.fd)

    def _fits(self, size: int) -> bool:
        if self.written - self.shipped + size <= self.limit:
            return True
        self.shipped = self.log.shipped_total()
        return self.written - self.shipped + size <= self.limit

    def _mark(self) -> None:
        marker = (b"\n" if self.line_open else b"") + DROPPED + b"%d\n" % self.dropped
        dropped, self.dropped = self.dropped, 0
        if not self._append(marker):
            self.dropped += dropped

    def _append(self, data: bytes) -> bool:
        view = memoryview(data)
        while view:
            try:
                count = os.write(self.fd, view)
            except OSError:  # the host's disk is full: the rest is dropped, and counted
                self.dropped += len(view)
                return False
            self.written += count
            self.line_open = view[count - 1] != ord("\n")
            view = view[count:]
        return True


def pump(source: int, writer: LogWriter) -> None:
    """A dyno's output from its pipe to its log, until every writer of the pipe is gone."""
    poller = select.poll()
    poller.register(source, select.POLLIN)
    while True:
        if not poller.poll(QUIET_SECONDS * 1000):
            writer.quiet()
            continue
        data = os.read(source, READ_SIZE)
        if not data:
            return
        writer.write(data)
