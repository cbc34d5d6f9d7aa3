"""Commits git's porcelain will not make: a file at a path no file system can hold."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

IDENTITY = {"GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "test@example.invalid",
            "GIT_COMMITTER_NAME": "Test", "GIT_COMMITTER_EMAIL": "test@example.invalid"}


def _git(repo: Path, *args: str, data: bytes = b"") -> bytes:
    return subprocess.run(["git", *args], cwd=repo, input=data, capture_output=True,
                          check=True, timeout=120, env={**os.environ, **IDENTITY}).stdout.strip()


def commit_file_at(repo: Path, path: bytes, message: str = "a long path") -> str:
    """Commits, on top of HEAD, a small file at `path` (names of any length); returns its id."""
    *directories, name = path.split(b"/")
    blob = _git(repo, "hash-object", "-w", "--stdin", data=b"long\n")
    entry = b"100644 blob " + blob + b"\t" + name
    for directory in reversed(directories):
        tree = _git(repo, "mktree", "-z", data=entry + b"\0")
        entry = b"040000 tree " + tree + b"\t" + directory
    head = _git(repo, "ls-tree", "-z", "HEAD")
    tree = _git(repo, "mktree", "-z", data=head + entry + b"\0")
    commit = _git(repo, "commit-tree", tree.decode(), "-p", "HEAD", "-m", message).decode()
    _git(repo, "update-ref", "HEAD", commit)
    return commit
