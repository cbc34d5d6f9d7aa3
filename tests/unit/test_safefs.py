"""paas.safefs: root's file operations on trees a build can write never follow a symlink."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from paas import safefs


@pytest.fixture
def canary(tmp_path: Path) -> Path:
    path = tmp_path / "outside" / "canary"
    path.parent.mkdir()
    path.write_text("host secret\n")
    return path


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "tree"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "file").write_text("plain\n")
    return root


def test_reads_a_plain_file_and_none_when_missing(tree: Path) -> None:
    assert safefs.read_file(tree, "sub/file") == b"plain\n"
    assert safefs.read_file(tree, "sub/missing") is None
    assert safefs.read_file(tree, "nowhere/missing") is None


def test_a_symlinked_file_is_not_read(tree: Path, canary: Path) -> None:
    (tree / "sub" / "link").symlink_to(canary)
    with pytest.raises(safefs.UnsafePath, match="sub/link is a symlink"):
        safefs.read_file(tree, "sub/link")


def test_a_symlinked_directory_on_the_way_is_not_followed(tree: Path, canary: Path) -> None:
    (tree / "dir-link").symlink_to(canary.parent)
    with pytest.raises(safefs.UnsafePath, match="dir-link is not a directory"):
        safefs.read_file(tree, "dir-link/canary")
    with pytest.raises(safefs.UnsafePath):
        safefs.write_file(tree, "dir-link/canary", b"")
    with pytest.raises(safefs.UnsafePath):
        safefs.make_dirs(tree, "dir-link/new")
    assert canary.read_text() == "host secret\n"
    assert sorted(os.listdir(canary.parent)) == ["canary"]


def test_write_refuses_a_symlink_and_leaves_its_target(tree: Path, canary: Path) -> None:
    (tree / "plan.toml").symlink_to(canary)
    with pytest.raises(safefs.UnsafePath, match=r"plan\.toml is a symlink"):
        safefs.write_file(tree, "plan.toml", b"")
    assert canary.read_text() == "host secret\n"


def test_write_creates_and_truncates_a_plain_file(tree: Path) -> None:
    safefs.write_file(tree, "sub/new", b"one two")
    safefs.write_file(tree, "sub/new", b"three")
    assert (tree / "sub" / "new").read_bytes() == b"three"


def test_fifos_are_neither_read_nor_written_nor_waited_on(tree: Path) -> None:
    os.mkfifo(tree / "fifo")
    with pytest.raises(safefs.UnsafePath, match="not a regular file"):
        safefs.read_file(tree, "fifo")
    with pytest.raises(safefs.UnsafePath):
        safefs.write_file(tree, "fifo", b"x")


def test_a_hard_link_is_not_written_through(tree: Path) -> None:
    os.link(tree / "sub" / "file", tree / "hard")
    with pytest.raises(safefs.UnsafePath, match="hard link"):
        safefs.write_file(tree, "hard", b"")
    assert (tree / "sub" / "file").read_text() == "plain\n"


def test_reads_are_bounded(tree: Path) -> None:
    with open(tree / "big", "wb") as f:
        f.truncate(10 * 1024 * 1024)
    with pytest.raises(safefs.UnsafePath, match="larger than 1048576 bytes"):
        safefs.read_file(tree, "big")
    assert safefs.read_file(tree, "sub/file", limit=6) == b"plain\n"
    with pytest.raises(safefs.UnsafePath):
        safefs.read_file(tree, "sub/file", limit=5)


def test_make_dirs_makes_parents_and_refuses_a_symlink(tree: Path, canary: Path) -> None:
    safefs.make_dirs(tree, "a/b/c")
    safefs.make_dirs(tree, "a/b/c")
    assert (tree / "a" / "b" / "c").is_dir()
    (tree / "layers").symlink_to(canary.parent)
    with pytest.raises(safefs.UnsafePath, match="layers is not a directory"):
        safefs.make_dirs(tree, "layers/bp")
    (tree / "a" / "bp").symlink_to(canary.parent)
    with pytest.raises(safefs.UnsafePath, match="a/bp is not a directory"):
        safefs.make_dirs(tree, "a/bp")
    assert sorted(os.listdir(canary.parent)) == ["canary"]


@pytest.mark.parametrize("rel", ["../x", "/etc/passwd", "a/../../x"])
def test_paths_that_leave_the_directory_are_refused(tree: Path, rel: str) -> None:
    with pytest.raises(safefs.UnsafePath, match="not a path inside"):
        safefs.read_file(tree, rel)


def test_is_dir_lstat_and_list_dir_do_not_follow(tree: Path, canary: Path) -> None:
    (tree / "link").symlink_to(canary.parent)
    assert not safefs.is_dir(tree, "link") and safefs.is_dir(tree, "sub")
    st = safefs.lstat(tree, "link")
    assert st is not None and stat.S_ISLNK(st.st_mode)
    assert safefs.list_dir(tree) == ["link", "sub"]
    assert safefs.list_dir(tree, "missing") == []
    with pytest.raises(safefs.UnsafePath):
        safefs.list_dir(tree, "link")


def test_walk_records_links_and_never_descends_them(tree: Path, canary: Path) -> None:
    (tree / "sub" / "to-host").symlink_to(canary.parent)
    links = {e.rel: e.read_link() if stat.S_ISLNK(e.st.st_mode)
             else "" for e in safefs.walk(tree)}
    assert links == {"sub": "", "sub/file": "", "sub/to-host": str(canary.parent)}
    with pytest.raises(safefs.UnsafePath, match="is not a directory"):
        list(safefs.walk(tree / "sub" / "to-host"))
