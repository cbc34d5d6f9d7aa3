"""The build's source: the commit's tar, read from the API as it arrives and unpacked member
by member, under the same limits the receiver applied (PAAS_MAX_SOURCE_MB and the others):
nothing holds the whole tree in memory, and a tree over a limit stops at the limit."""

from __future__ import annotations

import io
import os
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import IO

from paas.builder.buildpacks import BuildFailed
from paas.client import ApiClient
from paas.sourcetree import SourceLimits, SourceTooLarge, Tally

CHUNK = 1 << 16


class _ChunkReader(io.RawIOBase):
    """A file over an iterator of byte strings, for tarfile's stream mode."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks = chunks
        self.pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self.pending:
            self.pending = next(self.chunks, b"")
            if not self.pending:
                return 0
        size = min(len(buffer), len(self.pending))
        buffer[:size], self.pending = self.pending[:size], self.pending[size:]
        return size


def download(api: ApiClient, build_id: str, dest: Path, limits: SourceLimits) -> None:
    """Unpacks the build's source into `dest` while it downloads."""
    with api.stream(f"/v1/internal/builds/{build_id}/source") as response:
        reader = io.BufferedReader(_ChunkReader(response.iter_bytes(CHUNK)), CHUNK)
        extract(reader, dest, limits)


def extract(stream: IO[bytes], dest: Path, limits: SourceLimits) -> None:
    """Unpacks a tar read from `stream`; refuses paths that would leave `dest`, special files,
    a name seen twice and a tree over `limits`. `dest` is a fresh directory nothing else
    writes to yet, and no file is created under a symlink of the tree."""
    tally = Tally(limits)
    seen: set[PurePosixPath] = set()
    links: set[PurePosixPath] = set()
    try:
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            for member in tar:
                path = _checked_path(member, seen, links)
                tally.add(member.name, member.size if member.isfile() else 0)
                _write(tar, member, dest / path)
    except SourceTooLarge as error:
        raise BuildFailed(str(error)) from None
    except tarfile.TarError as error:
        raise BuildFailed(f"the source could not be read ({error}); push again") from None


def _checked_path(member: tarfile.TarInfo, seen: set[PurePosixPath],
                  links: set[PurePosixPath]) -> PurePosixPath:
    path = PurePosixPath(member.name)
    if (path.is_absolute() or ".." in path.parts or not path.parts or path in seen
            or any(p in links for p in path.parents)):
        raise BuildFailed(f"the commit holds an unsafe path: {member.name}")
    if not (member.isfile() or member.isdir() or member.issym()):
        raise BuildFailed(f"the commit holds a special file: {member.name}")
    seen.add(path)
    if member.issym():
        links.add(path)
    return path


def _write(tar: tarfile.TarFile, member: tarfile.TarInfo, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if member.isdir():
        target.mkdir(exist_ok=True)
    elif member.issym():
        os.symlink(member.linkname, target)
    else:
        _write_file(tar, member, target)


def _write_file(tar: tarfile.TarFile, member: tarfile.TarInfo, target: Path) -> None:
    source = tar.extractfile(member)
    assert source is not None
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                 member.mode & 0o777)
    with os.fdopen(fd, "wb") as out:
        shutil.copyfileobj(source, out, CHUNK)
        os.fchmod(out.fileno(), member.mode & 0o777)  # the umask trimmed the mode at open
        os.utime(out.fileno(), (member.mtime, member.mtime))
