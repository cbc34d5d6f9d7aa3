"""A service cgroup that cannot get its limit is not left behind; on v2 it gets memory.max and
counts its OOM kills in memory.events."""

from __future__ import annotations

from pathlib import Path

import pytest

from paas import cgroups
from paas.service_cgroups import ServiceCgroup, ServiceCgroups
from paas.settings import Settings


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


def v2_service(root: Path, service: str) -> Path:
    """What the kernel gives a new cgroup in a v2 tree that delegates memory to it."""
    path = root / "paas-ab12-services" / service
    path.mkdir(parents=True)
    for parent in (root, path.parent):
        (parent / "cgroup.subtree_control").write_text("")
    for name in ("memory.max", "memory.swap.max", "cgroup.procs"):
        (path / name).write_text("")
    (path / "memory.events").write_text("low 0\nhigh 0\nmax 0\noom 0\noom_kill 1\n"
                                        "oom_group_kill 0\n")
    return path


def test_a_v2_cgroup_gets_memory_max_and_no_swap(tmp_path: Path) -> None:
    group = ServiceCgroup("api", v2_service(tmp_path, "api"), 512, tmp_path, v2=True)
    group.create()
    assert (group.path / "memory.max").read_text() == str(512 * 1024 * 1024)
    assert (group.path / "memory.swap.max").read_text() == "0"
    assert (tmp_path / "cgroup.subtree_control").read_text() == "+memory"
    assert (group.path.parent / "cgroup.subtree_control").read_text() == "+memory"


def test_a_v2_cgroup_without_a_limit_has_max(tmp_path: Path) -> None:
    group = ServiceCgroup("router", v2_service(tmp_path, "router"), 0, tmp_path, v2=True)
    group.create()
    assert (group.path / "memory.max").read_text() == "max"
    assert (group.path / "memory.swap.max").read_text() == "max"


def test_v2_oom_kills_are_counted_from_memory_events(tmp_path: Path) -> None:
    group = ServiceCgroup("api", v2_service(tmp_path, "api"), 512, tmp_path, v2=True)
    group.create()
    assert group.new_oom_kills() == 0  # the one before the limit was set is not new
    (group.path / "memory.events").write_text("low 0\nhigh 0\nmax 9\noom 3\noom_kill 3\n")
    assert group.new_oom_kills() == 2
    assert group.new_oom_kills() == 0


def test_a_v2_cgroup_the_kernel_gave_no_memory_max_is_removed_again(tmp_path: Path) -> None:
    # the parent did not delegate memory: the new cgroup has no memory.* files
    group = ServiceCgroup("api", tmp_path / "services" / "api", 512, tmp_path, v2=True)
    with pytest.raises(OSError):
        group.create()
    assert not group.path.exists()


def test_paas_up_makes_v2_service_cgroups(monkeypatch: pytest.MonkeyPatch,
                                          tmp_path: Path) -> None:
    mounts = "29 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
    root = tmp_path / "cgroup"
    root.mkdir()
    (root / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (root / "cgroup.procs").write_text("1\n")
    monkeypatch.setattr(cgroups, "on_host", lambda: cgroups.Cgroups(root, mounts))
    settings = Settings(home=tmp_path / "home")
    api = v2_service(root, "api")
    api.parent.rename(root / f"paas-{settings.install_id}-services")
    said: list[str] = []
    groups = ServiceCgroups(settings, ["api"], said.append)
    assert said == [] and set(groups.groups) == {"api"} and groups.groups["api"].v2
    assert (root / f"paas-{settings.install_id}-services/api/memory.max").read_text() != ""
    assert groups.home is not None and groups.home.is_relative_to(root)
