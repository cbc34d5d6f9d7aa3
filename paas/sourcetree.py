"""A commit's tree as a build's source: measured against the platform's limits from git's
object headers (no blob is read), and streamed as a tar with bounded memory.

C git does the reading: `ls-tree -r -l` lists every file with its size, `cat-file --batch`
writes each blob out in pieces (`core.bigFileThreshold` low, so that a large blob is streamed
from its pack rather than inflated in memory; a delta is still resolved in memory, which is
what the single-file limit bounds)."""

from __future__ import annotations

import stat
import subprocess
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

from paas.git_helpers import first_to_go
from paas.settings import Settings

MB = 1024 * 1024
CHUNK = 1 << 16
BLOCK = tarfile.BLOCKSIZE
# Blobs over this size are streamed from their pack by git instead of inflated in memory.
GIT_STREAM_THRESHOLD = "1m"
# Linux's PATH_MAX and NAME_MAX: a longer name cannot be checked out anyway. A record of
# `ls-tree` (mode, type, id, size, path) longer than MAX_RECORD is refused before it is whole.
MAX_PATH = 4096
MAX_NAME = 255
MAX_RECORD = 8192


class SourceTooLarge(Exception):
    """The tree breaks one of the limits; str() says which, and the setting."""


@dataclass(frozen=True)
class SourceLimits:
    max_bytes: int
    max_file_bytes: int
    max_files: int

    @classmethod
    def of(cls, settings: Settings) -> SourceLimits:
        return cls(settings.max_source_mb * MB, settings.max_source_file_mb * MB,
                   settings.max_source_files)

    def too_large(self) -> str:
        return (f"the pushed tree unpacks to more than {self.max_bytes // MB} MB "
                "(PAAS_MAX_SOURCE_MB)")

    def file_too_large(self, path: str) -> str:
        return (f"{path} is larger than {self.max_file_bytes // MB} MB "
                "(PAAS_MAX_SOURCE_FILE_MB)")

    def too_many_files(self) -> str:
        return f"the pushed tree holds more than {self.max_files} files (PAAS_MAX_SOURCE_FILES)"


def _shown(path: bytes) -> str:
    text = path[:60].decode(errors="replace")
    return f"{text}..." if len(path) > 60 else text


def check_path(path: bytes) -> None:
    """Raises SourceTooLarge for a path or a name in it longer than Linux allows."""
    if len(path) > MAX_PATH:
        raise SourceTooLarge(f"a path in the pushed tree is longer than {MAX_PATH} bytes: "
                             f"{_shown(path)}")
    for name in path.split(b"/"):
        if len(name) > MAX_NAME:
            raise SourceTooLarge(f"a file or directory name in the pushed tree is longer "
                                 f"than {MAX_NAME} bytes: {_shown(name)}")


@dataclass(frozen=True)
class Entry:
    mode: int
    sha: str
    size: int
    path: str


class Tally:
    """Counts files and bytes as they come, raising at the first limit crossed."""

    def __init__(self, limits: SourceLimits) -> None:
        self.limits = limits
        self.files = 0
        self.bytes = 0

    def add(self, path: str, size: int) -> None:
        self.files += 1
        self.bytes += size
        if self.files > self.limits.max_files:
            raise SourceTooLarge(self.limits.too_many_files())
        if size > self.limits.max_file_bytes:
            raise SourceTooLarge(self.limits.file_too_large(path))
        if self.bytes > self.limits.max_bytes:
            raise SourceTooLarge(self.limits.too_large())


def _git(env: dict[str, str], *args: str, stdin: int | None = subprocess.DEVNULL
         ) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        ["git", "-c", f"core.bigFileThreshold={GIT_STREAM_THRESHOLD}", *args], env=env,
        cwd=env["GIT_DIR"], stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    first_to_go(proc.pid)
    return proc


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            stream.close()


def entries(env: dict[str, str], commit: str) -> Iterator[Entry]:
    """Every file of the commit's tree (blobs: files and symlinks; submodules are left out),
    read one line at a time from `git ls-tree`."""
    proc = _git(env, "ls-tree", "-r", "-l", "-z", "--full-tree", commit)
    assert proc.stdout is not None
    try:
        for record in _records(proc.stdout):
            meta, _, path = record.partition(b"\t")
            check_path(path)
            mode, kind, sha, size = meta.split()
            if kind != b"blob":
                continue
            yield Entry(int(mode, 8), sha.decode(), int(size),
                        path.decode(errors="surrogateescape"))
        if proc.wait() != 0:
            raise ValueError(f"git ls-tree failed for {commit}")
    finally:
        _stop(proc)


def _records(stream: IO[bytes]) -> Iterator[bytes]:
    """The NUL-terminated records of `stream`; none may be longer than MAX_RECORD bytes."""
    pending = bytearray()
    while chunk := stream.read1(CHUNK):  # type: ignore[attr-defined]
        pending += chunk
        start = 0
        while (end := pending.find(b"\0", start)) >= 0:
            yield _record(pending[start:end])
            start = end + 1
        del pending[:start]
        _bounded(pending)
    if pending:
        yield _record(pending)


def _bounded(record: bytearray) -> None:
    if len(record) > MAX_RECORD:
        path = bytes(record[:MAX_RECORD]).partition(b"\t")[2]
        raise SourceTooLarge(f"a path in the pushed tree is longer than {MAX_PATH} bytes: "
                             f"{_shown(path)}")


def _record(record: bytearray) -> bytes:
    _bounded(record)
    return bytes(record)


def check(env: dict[str, str], commit: str, limits: SourceLimits) -> None:
    """Raises SourceTooLarge if the commit's tree breaks a limit; reads no blob."""
    tally = Tally(limits)
    for entry in entries(env, commit):
        tally.add(entry.path, entry.size)


def tar_stream(env: dict[str, str], commit: str, limits: SourceLimits) -> Iterator[bytes]:
    """The commit's tree as a tar (PAX), in pieces of at most CHUNK bytes. Symlinks stay
    symlinks; file modes are git's (0644 or 0755); submodules are left out."""
    tally = Tally(limits)
    blobs = _git(env, "cat-file", "--batch", stdin=subprocess.PIPE)
    try:
        for entry in entries(env, commit):
            tally.add(entry.path, entry.size)
            yield from _member(blobs, entry)
        yield b"\0" * (2 * BLOCK)
    finally:
        _stop(blobs)


def _member(blobs: subprocess.Popen[bytes], entry: Entry) -> Iterator[bytes]:
    assert blobs.stdin is not None and blobs.stdout is not None
    blobs.stdin.write(f"{entry.sha}\n".encode())
    blobs.stdin.flush()
    header = blobs.stdout.readline().split()
    if len(header) != 3 or int(header[2]) != entry.size:
        raise ValueError(f"git cat-file could not read {entry.sha} ({entry.path})")
    info = tarfile.TarInfo(entry.path)
    if stat.S_ISLNK(entry.mode):
        target = _read(blobs.stdout, entry.size)
        info.type, info.linkname = tarfile.SYMTYPE, target.decode(errors="surrogateescape")
        yield _header(info)
    else:
        info.size, info.mode = entry.size, entry.mode & 0o777
        yield _header(info)
        left = entry.size
        while left:
            piece = blobs.stdout.read(min(CHUNK, left))
            if not piece:
                raise ValueError(f"git cat-file ended inside {entry.sha}")
            left -= len(piece)
            yield piece
        if entry.size % BLOCK:
            yield b"\0" * (BLOCK - entry.size % BLOCK)
    blobs.stdout.read(1)  # the newline after each object


def _read(stream: IO[bytes], size: int) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise ValueError("git cat-file ended early")
    return data


def _header(info: tarfile.TarInfo) -> bytes:
    return info.tobuf(tarfile.PAX_FORMAT, tarfile.ENCODING, "surrogateescape")
