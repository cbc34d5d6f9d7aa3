"""The worker's unpacking of a build's source tar: what it refuses, before writing anything
outside the destination."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from paas.builder.buildpacks import BuildFailed
from paas.builder.source import extract
from paas.sourcetree import MB, SourceLimits

LIMITS = SourceLimits(max_bytes=8 * MB, max_file_bytes=4 * MB, max_files=100)


def tar_of(*members: tuple[str, bytes | None, str]) -> io.BytesIO:
    """(name, data or None, symlink target or "") each."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data, target in members:
            info = tarfile.TarInfo(name)
            if target:
                info.type, info.linkname = tarfile.SYMTYPE, target
                tar.addfile(info)
            else:
                info.size = len(data or b"")
                tar.addfile(info, io.BytesIO(data or b""))
    out.seek(0)
    return out


@pytest.mark.parametrize("members", [
    [("../escape.txt", b"x", "")],
    [("/etc/escape.txt", b"x", "")],
    [("link", None, "/etc"), ("link/passwd", b"x", "")],
    [("a.txt", b"one", ""), ("a.txt", b"two", "")],
    [("link", None, "/tmp"), ("link", b"x", "")],
])
def test_unsafe_members_are_refused_and_nothing_lands_outside(
        tmp_path: Path, members: list[tuple[str, bytes | None, str]]) -> None:
    dest = tmp_path / "source"
    dest.mkdir()
    with pytest.raises(BuildFailed, match="unsafe path"):
        extract(tar_of(*members), dest, LIMITS)
    assert not (tmp_path / "escape.txt").exists()


def test_symlinks_stay_symlinks_and_files_keep_their_mode(tmp_path: Path) -> None:
    dest = tmp_path / "source"
    dest.mkdir()
    extract(tar_of(("bin/run", b"#!/bin/sh\n", ""), ("run", None, "bin/run")), dest, LIMITS)
    assert (dest / "run").is_symlink() and str((dest / "run").readlink()) == "bin/run"
    assert (dest / "bin/run").read_bytes() == b"#!/bin/sh\n"


def test_a_truncated_tar_fails_the_build_with_a_message(tmp_path: Path) -> None:
    data = tar_of(("a.bin", b"\0" * 100000, "")).getvalue()[:20000]
    dest = tmp_path / "source"
    dest.mkdir()
    with pytest.raises(BuildFailed, match="could not be read"):
        extract(io.BytesIO(data), dest, LIMITS)
