"""safefs.write_atomic / open_fd / open_append: root's own files in root's own directories,
where a link found in place is replaced or refused, never followed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from paas import safefs


@pytest.fixture
def canary(tmp_path: Path) -> Path:
    outside = tmp_path / "outside"
    outside.mkdir()
    path = outside / "canary"
    path.write_text("untouched\n")
    return path


def test_write_atomic_replaces_the_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    (tmp_path / "record").write_text("old")
    safefs.write_atomic(tmp_path, "record", b"new", mode=0o640)
    assert (tmp_path / "record").read_bytes() == b"new"
    assert (tmp_path / "record").stat().st_mode & 0o777 == 0o640
    assert sorted(os.listdir(tmp_path)) == ["record"]


def test_write_atomic_replaces_a_link_rather_than_following_it(
        tmp_path: Path, canary: Path) -> None:
    (tmp_path / "record").symlink_to(canary)
    safefs.write_atomic(tmp_path, "record", b"new")
    assert not (tmp_path / "record").is_symlink()
    assert (tmp_path / "record").read_bytes() == b"new"
    assert canary.read_text() == "untouched\n"


def test_write_atomic_is_not_stopped_by_a_link_at_a_predictable_temporary_name(
        tmp_path: Path, canary: Path) -> None:
    for name in ("record.tmp", ".record.tmp"):
        (tmp_path / name).symlink_to(canary)
    safefs.write_atomic(tmp_path, "record", b"new")
    assert (tmp_path / "record").read_bytes() == b"new"
    assert canary.read_text() == "untouched\n"


def test_open_append_creates_appends_and_refuses_a_link(tmp_path: Path, canary: Path) -> None:
    for _ in range(2):
        fd = safefs.open_append(tmp_path, "output.log")
        os.write(fd, b"line\n")
        os.close(fd)
    assert (tmp_path / "output.log").read_bytes() == b"line\nline\n"
    assert (tmp_path / "output.log").stat().st_mode & 0o777 == 0o600
    (tmp_path / "linked.log").symlink_to(canary)
    with pytest.raises(safefs.UnsafePath, match="symlink"):
        safefs.open_append(tmp_path, "linked.log")
    assert canary.read_text() == "untouched\n"


def test_open_fd_of_a_missing_file_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        safefs.open_fd(tmp_path, "output.log", os.O_RDONLY)
