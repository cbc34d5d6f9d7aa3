"""File operations for root on trees that a build or a dyno can write.

A build's processes can put a symlink, a FIFO or a huge file wherever they can write. Root
must never follow such a link (it would write or create host files, or read host content into
a slug), block on a FIFO, or read an unbounded file. Every function here takes a trusted
directory (created by root, not replaceable by the build: a mount point or a root-owned
directory) and a relative path below it whose components are untrusted. Each component is
opened relative to its parent's file descriptor with O_NOFOLLOW (openat), so a link anywhere
on the way is refused, not followed, even if it appears between two calls.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

# Platform metadata a build writes (layer toml, env files, launch.toml, Procfile) is small.
METADATA_LIMIT = 1024 * 1024
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class UnsafePath(Exception):
    """An entry root was about to use is a symlink, a special file or too large."""

    def __init__(self, rel: str, reason: str) -> None:
        super().__init__(f"{rel} {reason}")
        self.rel = rel
        self.reason = reason


def parts_of(rel: str) -> list[str]:
    """The components of a relative path; refuses absolute paths and '..'."""
    path = PurePosixPath(rel)
    if path.is_absolute() or ".." in path.parts:
        raise UnsafePath(rel, "is not a path inside its directory")
    return [p for p in path.parts if p not in ("", ".")]


def _why(err: OSError) -> str:
    if err.errno == errno.ELOOP:
        return "is a symlink"
    if err.errno == errno.ENOTDIR:
        return "is not a directory (a symlink or a file)"
    if err.errno in (errno.ENXIO, errno.EOPNOTSUPP):
        return "is a FIFO, a socket or a device, not a regular file"
    return f"cannot be opened ({err.strerror})"


def _open_below(dir_fd: int, parts: list[str], shown: list[str]) -> int:
    fd = os.dup(dir_fd)
    for i, part in enumerate(parts):
        try:
            child = os.open(part, _DIR_FLAGS, dir_fd=fd)
        except OSError as err:
            if err.errno == errno.ENOENT:
                os.close(fd)
                raise
            os.close(fd)
            raise UnsafePath("/".join([*shown, *parts[: i + 1]]), _why(err)) from None
        os.close(fd)
        fd = child
    return fd


@contextmanager
def opened_dir(root: Path, rel: str = "") -> Iterator[int]:
    """A file descriptor of root/rel; FileNotFoundError when a component is missing."""
    top = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fd = _open_below(top, parts_of(rel), [])
    finally:
        os.close(top)
    try:
        yield fd
    finally:
        os.close(fd)


def _split(rel: str) -> tuple[str, str]:
    parts = parts_of(rel)
    if not parts:
        raise UnsafePath(rel, "names no file")
    return "/".join(parts[:-1]), parts[-1]


def make_dirs(root: Path, rel: str, mode: int = 0o755) -> None:
    """mkdir -p root/rel without following a symlink; an existing non-directory is refused."""
    parts = parts_of(rel)
    with opened_dir(root) as fd:
        current = os.dup(fd)
        try:
            for i, part in enumerate(parts):
                with suppress(FileExistsError):
                    os.mkdir(part, mode, dir_fd=current)
                child = _open_below(current, [part], parts[:i])
                os.close(current)
                current = child
        finally:
            os.close(current)


def write_file(root: Path, rel: str, data: bytes, mode: int = 0o644) -> None:
    """Create or truncate root/rel and write data; a symlink or special file is refused."""
    parent, name = _split(rel)
    with opened_dir(root, parent) as dir_fd:
        try:
            fd = os.open(name, _WRITE_FLAGS, mode, dir_fd=dir_fd)
        except OSError as err:
            raise UnsafePath(rel, _why(err)) from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_nlink > 1:
                raise UnsafePath(rel, "is not a plain file (a FIFO, or a hard link)")
            os.ftruncate(fd, 0)
            os.set_blocking(fd, True)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)


def read_file(root: Path, rel: str, limit: int = METADATA_LIMIT) -> bytes | None:
    """The content of root/rel, at most limit bytes; None when it does not exist."""
    parent, name = _split(rel)
    try:
        with opened_dir(root, parent) as dir_fd:
            return _read_at(dir_fd, name, rel, limit)
    except FileNotFoundError:
        return None


def _read_at(dir_fd: int, name: str, rel: str, limit: int) -> bytes:
    try:
        fd = os.open(name, _READ_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        raise
    except OSError as err:
        raise UnsafePath(rel, _why(err)) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafePath(rel, "is not a regular file")
        if st.st_size > limit:
            raise UnsafePath(rel, f"is larger than {limit} bytes")
        chunks, left = [], limit + 1
        while left > 0 and (chunk := os.read(fd, min(left, 65536))):
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
        if len(data) > limit:
            raise UnsafePath(rel, f"is larger than {limit} bytes")
        return data
    finally:
        os.close(fd)


def lstat(root: Path, rel: str) -> os.stat_result | None:
    """The entry's own status (a symlink is not followed); None when it does not exist."""
    parent, name = _split(rel)
    try:
        with opened_dir(root, parent) as dir_fd:
            return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def is_dir(root: Path, rel: str) -> bool:
    """A real directory (not a symlink to one) at root/rel."""
    st = lstat(root, rel)
    return st is not None and stat.S_ISDIR(st.st_mode)


def list_dir(root: Path, rel: str = "") -> list[str]:
    """The sorted names in root/rel; [] when it does not exist."""
    try:
        with opened_dir(root, rel) as fd:
            return sorted(os.listdir(fd))
    except FileNotFoundError:
        return []


@dataclass(frozen=True)
class Entry:
    """One entry of a walked tree: its relative name, own status and parent directory fd
    (valid only while the walk is at this entry)."""

    rel: str
    st: os.stat_result
    dir_fd: int
    name: str

    def read_link(self) -> str:
        return os.readlink(self.name, dir_fd=self.dir_fd)

    def open_file(self) -> int:
        """A read fd of this regular file; refused if it is no longer the entry walked."""
        try:
            fd = os.open(self.name, _READ_FLAGS, dir_fd=self.dir_fd)
        except OSError as err:
            raise UnsafePath(self.rel, _why(err)) from None
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != (self.st.st_dev, self.st.st_ino) or not stat.S_ISREG(
                st.st_mode):
            os.close(fd)
            raise UnsafePath(self.rel, "changed while it was read")
        os.set_blocking(fd, True)
        return fd


def walk(root: Path, exclude: frozenset[str] = frozenset()) -> Iterator[Entry]:
    """Every entry under root, sorted by name, depth first, never through a symlink.

    exclude names top-level entries to skip. root itself must be a real directory.
    """
    top_st = os.lstat(root)
    if not stat.S_ISDIR(top_st.st_mode):
        raise UnsafePath(str(root), "is not a directory (a symlink or a file)")
    with opened_dir(root) as fd:
        yield from _walk_fd(fd, "", exclude)


def _walk_fd(dir_fd: int, rel: str, exclude: frozenset[str]) -> Iterator[Entry]:
    for name in sorted(os.listdir(dir_fd)):
        if not rel and name in exclude:
            continue
        entry_rel = f"{rel}/{name}" if rel else name
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        yield Entry(entry_rel, st, dir_fd, name)
        if stat.S_ISDIR(st.st_mode):
            child = _open_below(dir_fd, [name], rel.split("/") if rel else [])
            try:
                yield from _walk_fd(child, entry_rel, exclude)
            finally:
                os.close(child)
