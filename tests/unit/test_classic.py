from __future__ import annotations

import os
from pathlib import Path

import pytest

from paas.builder import classic
from paas.builder.cnb import BuildpackError, Kind, read_inside


def test_default_process_types_from_release_yaml() -> None:
    text = """---
addons: []
config_vars:
  PATH: /app/bin:/usr/bin
default_process_types:
  web: bundle exec puma -p $PORT
  worker: 'python worker.py --name ''w'''
"""
    assert classic.default_process_types(text) == {
        "web": "bundle exec puma -p $PORT", "worker": "python worker.py --name 'w'"}
    assert classic.default_process_types("---\nconfig_vars:\n  A: b\n") == {}


@pytest.mark.parametrize("entry", ["../outside", "/etc", "sub/../../x", "."])
def test_repo_paths_never_leave_the_repository(tmp_path: Path, entry: str) -> None:
    (tmp_path / "sub").mkdir()
    with pytest.raises(BuildpackError, match="must be a directory inside the repository"):
        classic.inside_repo(tmp_path, entry, ".buildpacks")


def test_a_symlink_out_of_the_repository_is_refused(tmp_path: Path) -> None:
    (tmp_path / "repo").mkdir()
    (tmp_path / "repo" / "bp").symlink_to(tmp_path)
    with pytest.raises(BuildpackError, match="inside the repository"):
        classic.inside_repo(tmp_path / "repo", "bp", "BUILDPACK_URL")


@pytest.mark.parametrize("url", ["file:///etc", "ext::sh -c id", "ssh://host/x.git"])
def test_only_http_and_git_urls_are_fetched(tmp_path: Path, url: str) -> None:
    with pytest.raises(BuildpackError, match="cannot fetch buildpack"):
        classic.fetch(url, tmp_path / "bp", lambda line: None)


def test_an_unreachable_url_fails_with_gits_reason(tmp_path: Path) -> None:
    with pytest.raises(BuildpackError, match=r"cannot fetch buildpack git://127.0.0.1:9/x.git: "):
        classic.fetch("git://127.0.0.1:9/x.git", tmp_path / "bp", lambda line: None)


def test_load_any_tells_cnb_from_classic(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "compile").write_text("#!/bin/sh\n")
    assert classic.load_any(tmp_path, "mine").kind == Kind.CLASSIC
    with pytest.raises(BuildpackError, match="neither a Cloud Native Buildpack"):
        classic.load_any(tmp_path / "bin", "empty")


def test_split_of_compile_output_from_the_commit(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("code\n")
    (tmp_path / "changed.txt").write_text("before\n")
    before = classic.snapshot(tmp_path, frozenset({".layers"}))
    (tmp_path / "vendor").mkdir()
    (tmp_path / "vendor" / "lib.so").write_text("binary\n")
    (tmp_path / "changed.txt").write_text("after, longer\n")
    added, app = classic.added_by_buildpacks(before), classic.from_the_app(before)
    names = ["app.py", "changed.txt", "vendor", "vendor/lib.so"]
    assert [n for n in names if added(n, tmp_path / n)] == ["changed.txt", "vendor",
                                                            "vendor/lib.so"]
    assert [n for n in names if app(n, tmp_path / n)] == ["app.py"]


def test_a_symlink_loop_or_a_fifo_is_not_read(tmp_path: Path) -> None:
    (tmp_path / "Procfile").symlink_to("Procfile")
    with pytest.raises(BuildpackError, match="loop of symlinks"):
        read_inside(tmp_path, "Procfile")
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "project.toml").symlink_to("fifo")
    with pytest.raises(BuildpackError, match="not a regular file"):
        read_inside(tmp_path, "project.toml")
