"""The apps' bare git repositories: created with the app, moved only by a release."""

from __future__ import annotations

import io
import shutil
import stat
import tarfile
from collections.abc import Iterator
from pathlib import Path

from dulwich.object_store import iter_tree_contents
from dulwich.objects import S_ISGITLINK
from dulwich.repo import Repo

from paas.errors import Conflict

ZERO = "0" * 40


class Repos:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, app: str) -> Path:
        return self.root / f"{app}.git"

    def create(self, app: str) -> None:
        path = self.path(app)
        if not path.exists():
            path.mkdir(parents=True)
            Repo.init_bare(str(path)).close()

    def delete(self, app: str) -> None:
        shutil.rmtree(self.path(app), ignore_errors=True)

    def head(self, app: str, ref: str) -> str:
        with Repo(str(self.path(app))) as repo:
            try:
                return repo.refs[ref.encode()].decode()
            except KeyError:
                return ZERO

    def move_ref(self, app: str, ref: str, old: str, new: str) -> None:
        """Compare-and-swap: the ref moves only if it still points at `old`."""
        with Repo(str(self.path(app))) as repo:
            name = ref.encode()
            moved = (
                repo.refs.add_if_new(name, new.encode())
                if old == ZERO
                else repo.refs.set_if_equals(name, old.encode(), new.encode())
            )
            if not moved:
                raise Conflict(
                    f"{ref} moved while this push was building; "
                    "fetch first (git pull), then push again"
                )
            repo.refs.set_symbolic_ref(b"HEAD", name)

    def archive(self, app: str, commit: str) -> Iterator[bytes]:
        """A tar of the commit's tree (the build's source)."""
        with Repo(str(self.path(app))) as repo:
            yield _tar_of_tree(repo, repo[commit.encode()].tree)


def _tar_of_tree(repo: Repo, tree: bytes) -> bytes:
    """dulwich's tar_stream writes a symlink as a regular file holding its target; this keeps
    symlinks as symlinks (the build's extraction still refuses any that leave the tree)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry in iter_tree_contents(repo.object_store, tree):
            if S_ISGITLINK(entry.mode):
                continue
            data = repo[entry.sha].as_raw_string()
            info = tarfile.TarInfo(entry.path.decode(errors="surrogateescape"))
            if stat.S_ISLNK(entry.mode):
                info.type, info.linkname = tarfile.SYMTYPE, data.decode(errors="surrogateescape")
                tar.addfile(info)
            else:
                info.size, info.mode = len(data), entry.mode & 0o777
                tar.addfile(info, io.BytesIO(data))
    return out.getvalue()
