"""The backup store: `$PAAS_HOME/backups/`, root's (0700), one pg_dump file per backup.

    <id>.dump            a finished backup (0600), named by its row id
    .<id>.dump.partial   a dump being written; renamed into place only when pg_dump ended well

Its size is checked while a dump grows: the store may hold PAAS_BACKUP_STORE_MB in all (0: no
limit of its own) and always leaves RESERVE_BYTES of its filesystem free, so a full store
fails the capture under way with a message, and the backups it holds stay as they were."""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

RESERVE_BYTES = 4 * 1024 * 1024
SETTING = "PAAS_BACKUP_STORE_MB"


class StoreError(Exception):
    """The store cannot be used (not root's, not a directory); the message says why."""


class BackupStore:
    def __init__(self, root: Path, limit_mb: int = 0) -> None:
        self.root = root
        self.limit = limit_mb * 1024 * 1024

    def prepare(self) -> None:
        """The store's directory, made if missing; refused unless it is root's own directory
        (a symlink or another owner would send root's writes elsewhere)."""
        with contextlib.suppress(FileExistsError):
            os.mkdir(self.root, 0o700)
        st = os.lstat(self.root)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
            raise StoreError(f"{self.root} is not a directory of the platform's own")
        if stat.S_IMODE(st.st_mode) != 0o700:
            os.chmod(self.root, 0o700, follow_symlinks=False)

    def path(self, backup_id: int) -> Path:
        return self.root / f"{backup_id}.dump"

    def partial(self, backup_id: int) -> Path:
        return self.root / f".{backup_id}.dump.partial"

    def new_partial(self, backup_id: int) -> Path:
        """An empty partial file (0600), made here so pg_dump writes into root's own file."""
        path = self.partial(backup_id)
        path.unlink(missing_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        os.close(fd)
        return path

    def commit(self, backup_id: int) -> Path:
        os.rename(self.partial(backup_id), self.path(backup_id))
        return self.path(backup_id)

    def discard(self, backup_id: int) -> None:
        self.partial(backup_id).unlink(missing_ok=True)

    def remove(self, backup_id: int) -> None:
        self.discard(backup_id)
        self.path(backup_id).unlink(missing_ok=True)

    def has(self, backup_id: int) -> bool:
        return self.path(backup_id).is_file()

    def open(self, backup_id: int) -> int:
        """A read-only fd of the backup's file (FileNotFoundError when it is gone)."""
        return os.open(self.path(backup_id), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)

    def free_bytes(self) -> int:
        st = os.statvfs(self.root)
        return st.f_bavail * st.f_frsize

    def used_bytes(self, *, but: Path | None = None) -> int:
        total = 0
        for entry in os.scandir(self.root):
            if entry.is_file(follow_symlinks=False) and Path(entry.path) != but:
                total += entry.stat(follow_symlinks=False).st_size
        return total

    def room(self, backup_id: int, written: int) -> int:
        """How many more bytes the dump of `backup_id` may write (negative: too many)."""
        return room_left(self.free_bytes(), self.limit,
                         self.used_bytes(but=self.partial(backup_id)), written)

    def full_message(self) -> str:
        free = self.free_bytes() // (1024 * 1024)
        limit = (f"{self.limit // (1024 * 1024)} MB ({SETTING})" if self.limit
                 else "the free space of its disk")
        return (f"the backup store is full: it may hold {limit}, and {free} MB are free on "
                f"its disk ({self.root}); delete old backups (paas pg:backups:delete) or give "
                "it more room. The backups it holds are unchanged")


def room_left(free: int, limit: int, used_by_others: int, written: int) -> int:
    """Bytes a dump that has written `written` may still write: it must leave RESERVE_BYTES
    of the disk free and, with a limit, keep the store (others + itself) within it."""
    room = free - RESERVE_BYTES
    if limit:
        room = min(room, limit - used_by_others - written)
    return room
