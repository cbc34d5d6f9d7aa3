"""The apps' bare git repositories: created with the app, moved only by a release."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

from dulwich.objects import ObjectID
from dulwich.refs import Ref
from dulwich.repo import Repo

from paas import sourcetree
from paas.errors import Conflict
from paas.git_helpers import git_env
from paas.sourcetree import SourceLimits

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
                return repo.refs[Ref(ref.encode())].decode()
            except KeyError:
                return ZERO

    def move_ref(self, app: str, ref: str, old: str, new: str) -> None:
        """Compare-and-swap: the ref moves only if it still points at `old`."""
        with Repo(str(self.path(app))) as repo:
            name = Ref(ref.encode())
            moved = (
                repo.refs.add_if_new(name, ObjectID(new.encode()))
                if old == ZERO
                else repo.refs.set_if_equals(name, ObjectID(old.encode()), ObjectID(new.encode()))
            )
            if not moved:
                raise Conflict(
                    f"{ref} moved while this push was building; "
                    "fetch first (git pull), then push again"
                )
            repo.refs.set_symbolic_ref(Ref(b"HEAD"), name)

    def archive(self, app: str, commit: str, limits: SourceLimits) -> Iterator[bytes]:
        """A tar of the commit's tree (the build's source), in pieces: never whole in memory.
        Stops (SourceTooLarge) at the first limit the tree breaks."""
        return sourcetree.tar_stream(git_env(self.path(app)), commit, limits)
