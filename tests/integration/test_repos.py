"""An app's repository as the build sees it: the archive of a pushed commit."""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

import pytest

from paas import sourcetree
from paas.builder.buildpacks import BuildFailed
from paas.builder.source import extract
from paas.git_helpers import git_env
from paas.repos import Repos
from paas.sourcetree import MB, SourceLimits, SourceTooLarge
from tests.gittrees import commit_file_at
from tests.platform import git

LIMITS = SourceLimits(max_bytes=64 * MB, max_file_bytes=32 * MB, max_files=1000)


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

    tar = b"".join(repos.archive("app", commit, LIMITS))
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        members = {m.name: m for m in archive.getmembers()}
        content = archive.extractfile("app.py").read()

    assert members["link.py"].issym() and members["link.py"].linkname == "app.py"
    assert members["run.sh"].mode == 0o755
    assert content == b"print('hi')\n"


def _pushed(tmp_path: Path, files: dict[str, bytes]) -> tuple[Repos, str]:
    work = tmp_path / "work"
    work.mkdir()
    git(work, "init", "-q", "-b", "main")
    for name, data in files.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_bytes(data)
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "files")
    repos = Repos(tmp_path / "repos")
    repos.create("app")
    subprocess.run(["git", "-C", str(work), "push", "-q", str(repos.path("app")), "main"],
                   check=True)
    return repos, git(work, "rev-parse", "HEAD").stdout.strip()


def test_the_archive_streams_in_pieces_and_unpacks_whole(tmp_path: Path) -> None:
    big = bytes(range(256)) * (12 * 4096)  # 12 MiB
    long_name = "/".join(["directory-with-a-long-name"] * 8) + "/file.txt"
    repos, commit = _pushed(tmp_path, {"big.bin": big, "a/b/c.txt": b"c\n", "empty": b"",
                                       long_name: b"long\n", "caf\u00e9.txt": b"utf-8\n"})
    pieces = list(repos.archive("app", commit, LIMITS))
    assert max(len(p) for p in pieces) <= sourcetree.CHUNK
    dest = tmp_path / "source"
    dest.mkdir()
    extract(io.BytesIO(b"".join(pieces)), dest, LIMITS)
    assert (dest / "big.bin").read_bytes() == big
    assert (dest / "a/b/c.txt").read_bytes() == b"c\n"
    assert (dest / "empty").read_bytes() == b""
    assert (dest / long_name).read_bytes() == b"long\n"
    assert (dest / "caf\u00e9.txt").read_bytes() == b"utf-8\n"


@pytest.mark.parametrize(("limits", "message"), [
    (SourceLimits(max_bytes=2 * MB, max_file_bytes=32 * MB, max_files=1000),
     "the pushed tree unpacks to more than 2 MB (PAAS_MAX_SOURCE_MB)"),
    (SourceLimits(max_bytes=64 * MB, max_file_bytes=1 * MB, max_files=1000),
     "big.bin is larger than 1 MB (PAAS_MAX_SOURCE_FILE_MB)"),
    (SourceLimits(max_bytes=64 * MB, max_file_bytes=32 * MB, max_files=2),
     "the pushed tree holds more than 2 files (PAAS_MAX_SOURCE_FILES)"),
])
def test_a_tree_over_a_limit_is_refused_by_check_archive_and_extract(
        tmp_path: Path, limits: SourceLimits, message: str) -> None:
    repos, commit = _pushed(tmp_path, {"a.txt": b"a", "big.bin": b"\0" * (3 * MB),
                                       "z.txt": b"z"})
    with pytest.raises(SourceTooLarge, match=message.replace("(", r"\(").replace(")", r"\)")):
        sourcetree.check(git_env(repos.path("app")), commit, limits)
    with pytest.raises(SourceTooLarge):
        b"".join(repos.archive("app", commit, limits))
    tar = b"".join(repos.archive("app", commit, LIMITS))
    dest = tmp_path / "source"
    dest.mkdir()
    with pytest.raises(BuildFailed, match=message.replace("(", r"\(").replace(")", r"\)")):
        extract(io.BytesIO(tar), dest, limits)


@pytest.mark.parametrize(("path", "message"), [
    (b"n" * (2 * MB), "a path in the pushed tree is longer than 4096 bytes: nnn"),
    (b"/".join([b"d" * 200] * 21), "a path in the pushed tree is longer than 4096 bytes: ddd"),
    (b"a/" + b"c" * 256, "a file or directory name in the pushed tree is longer than 255 bytes"),
])
def test_a_path_too_long_for_linux_is_refused_by_check_and_archive(
        tmp_path: Path, path: bytes, message: str) -> None:
    repos, _ = _pushed(tmp_path, {"a.txt": b"a"})
    commit = commit_file_at(tmp_path / "work", path)
    subprocess.run(["git", "-C", str(tmp_path / "work"), "push", "-q", str(repos.path("app")),
                    "main"], check=True)
    with pytest.raises(SourceTooLarge, match=message):
        sourcetree.check(git_env(repos.path("app")), commit, LIMITS)
    with pytest.raises(SourceTooLarge, match=message):
        b"".join(repos.archive("app", commit, LIMITS))
