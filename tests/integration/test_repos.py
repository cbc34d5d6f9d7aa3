"""An app's repository as the build sees it: the archive of a pushed commit."""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

from paas.repos import Repos
from tests.platform import git


def test_the_archive_keeps_symlinks_and_executable_bits(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    git(work, "init", "-q", "-b", "main")
    (work / "app.py").write_text("print('hi')\n")
    (work / "run.sh").write_text("#!/bin/sh\n")
    (work / "run.sh").chmod(0o755)
    (work / "link.py").symlink_to("app.py")
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "symlinks")
    repos = Repos(tmp_path / "repos")
    repos.create("app")
    subprocess.run(["git", "-C", str(work), "push", "-q", str(repos.path("app")), "main"],
                   check=True)
    commit = git(work, "rev-parse", "HEAD").stdout.strip()

    with tarfile.open(fileobj=io.BytesIO(b"".join(repos.archive("app", commit)))) as archive:
        members = {m.name: m for m in archive.getmembers()}
        content = archive.extractfile("app.py").read()

    assert members["link.py"].issym() and members["link.py"].linkname == "app.py"
    assert members["run.sh"].mode == 0o755
    assert content == b"print('hi')\n"
