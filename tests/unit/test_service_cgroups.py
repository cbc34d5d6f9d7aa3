"""A service cgroup that cannot get its limit is not left behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from paas.service_cgroups import ServiceCgroup


def test_a_cgroup_whose_limit_cannot_be_set_is_removed_again(tmp_path: Path) -> None:
    # not a cgroup file system: the directory is made, memory.limit_in_bytes is missing
    group = ServiceCgroup("api", tmp_path / "services" / "api", 512, tmp_path)
    with pytest.raises(OSError):
        group.create()
    assert not group.path.exists()


def test_a_directory_that_was_there_before_is_kept(tmp_path: Path) -> None:
    (tmp_path / "api").mkdir()
    group = ServiceCgroup("api", tmp_path / "api", 512, tmp_path)
    with pytest.raises(OSError):
        group.create()
    assert group.path.is_dir()
