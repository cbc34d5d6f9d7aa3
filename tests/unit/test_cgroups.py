"""paas/cgroups.py on recorded cgroup trees (tests/fixtures/cgroupfs/): which hierarchy a host
uses, what it offers, and every read on v1, hybrid and v2, a cgroup that is gone included."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from paas import cgroups
from paas.cgroups import Cgroups, Layout
from paas.runtime import oci
from paas.runtime.containers import Runtime
from paas.settings import Settings

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "cgroupfs"
DYNO = "paas-ab12/web-1"
GONE = "paas-ab12/web-9"
MB = 1024 * 1024


def recorded(tree: str, root: Path | None = None) -> Cgroups:
    return Cgroups(root=root or FIXTURES / tree / "root",
                   mountinfo=(FIXTURES / tree / "mountinfo").read_text())


@pytest.mark.parametrize(("tree", "layout"), [("v1", Layout.V1), ("hybrid", Layout.HYBRID),
                                              ("v2", Layout.V2)])
def test_the_layout_is_read_from_mountinfo(tree: str, layout: Layout) -> None:
    assert recorded(tree).layout == layout


def test_no_cgroup_mount_is_no_layout(tmp_path: Path) -> None:
    mounts = "24 22 0:22 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw\n"
    found = Cgroups(root=tmp_path, mountinfo=mounts)
    assert found.layout == Layout.NONE
    assert found.controllers() == frozenset()
    assert found.memory_bytes(DYNO) == 0 and found.cpu_usage_ns(DYNO) is None


def test_v2_controllers_are_those_of_the_roots_cgroup_controllers() -> None:
    found = recorded("v2")
    assert found.controllers() == {"cpuset", "cpu", "io", "memory", "hugetlb", "pids",
                                   "rdma", "misc"}
    memory = found.hierarchy("memory")
    assert memory is not None and memory.version == 2 and memory.path == found.root


@pytest.mark.parametrize("tree", ["v1", "hybrid"])
def test_v1_controllers_are_the_mounted_hierarchies_options(tree: str) -> None:
    found = recorded(tree)
    assert found.controllers() == {"cpu", "cpuacct", "memory", "pids", "devices", "net_cls",
                                   "net_prio", "freezer", "blkio", "cpuset", "hugetlb",
                                   "perf_event"}
    assert found.has("memory") and found.has("pids") and found.has("cpu")
    memory = found.hierarchy("memory")
    assert memory is not None and memory.path == found.root / "memory"
    cpu = found.hierarchy("cpuacct")
    assert cpu is not None and cpu.path == found.root / "cpu,cpuacct"


def test_a_controller_the_v2_root_does_not_list_is_not_there(tmp_path: Path) -> None:
    root = tmp_path / "root"
    shutil.copytree(FIXTURES / "v2" / "root", root)
    (root / "cgroup.controllers").write_text("cpu io pids\n")
    found = recorded("v2", root)
    assert not found.has("memory") and found.has("pids")
    assert found.memory_bytes(DYNO) == 0 and found.oom_kills(DYNO) == 0


@pytest.mark.parametrize(("tree", "memory"), [("v1", 49283072 + 4194304),
                                              ("hybrid", 49283072 + 4194304),
                                              ("v2", 52342784 + 4194304)])
def test_memory_is_anonymous_memory_and_tmpfs(tree: str, memory: int) -> None:
    assert recorded(tree).memory_bytes(DYNO) == memory


def test_v2_memory_leaves_out_the_page_cache_that_memory_current_has() -> None:
    current = int((FIXTURES / "v2" / "root" / DYNO / "memory.current").read_text())
    assert recorded("v2").memory_bytes(DYNO) < current


@pytest.mark.parametrize("tree", ["v1", "hybrid", "v2"])
def test_oom_kills_and_pids(tree: str) -> None:
    found = recorded(tree)
    assert found.oom_kills(DYNO) == 2
    assert found.pids(DYNO) == 3


@pytest.mark.parametrize(("tree", "ns"), [("v1", 1842337451), ("hybrid", 1842337451),
                                          ("v2", 1842337000)])
def test_cpu_usage_in_ns(tree: str, ns: int) -> None:
    # hybrid: cpuacct's own counter, not the unified tree's coarser cpu.stat
    assert recorded(tree).cpu_usage_ns(DYNO) == ns


@pytest.mark.parametrize("tree", ["v1", "hybrid", "v2"])
def test_a_cgroup_that_is_gone_reads_as_nothing(tree: str) -> None:
    found = recorded(tree)
    assert found.memory_bytes(GONE) == 0
    assert found.oom_kills(GONE) == 0
    assert found.cpu_usage_ns(GONE) is None
    assert found.pids(GONE) == 0


@pytest.mark.parametrize("tree", ["v1", "v2"])
def test_swap_is_accounted(tree: str) -> None:
    assert recorded(tree).swap_accounted()


def test_v2_without_memory_swap_max_has_no_swap_accounting(tmp_path: Path) -> None:
    root = tmp_path / "root"
    shutil.copytree(FIXTURES / "v2" / "root", root)
    for path in root.rglob("memory.swap.max"):
        path.unlink()
    assert not recorded("v2", root).swap_accounted()


def test_v1_without_memsw_has_no_swap_accounting(tmp_path: Path) -> None:
    root = tmp_path / "root"
    shutil.copytree(FIXTURES / "v1" / "root", root)
    (root / "memory" / "memory.memsw.limit_in_bytes").unlink()
    assert not recorded("v1", root).swap_accounted()


PROC_CGROUP_HYBRID = ("12:pids:/user.slice/user-0.slice/session-3.scope\n"
                      "4:memory:/user.slice/user-0.slice/session-3.scope\n"
                      "3:cpu,cpuacct:/user.slice\n"
                      "1:name=systemd:/user.slice/user-0.slice/session-3.scope\n"
                      "0::/user.slice/user-0.slice/session-3.scope\n")


@pytest.mark.parametrize(("tree", "where"), [("hybrid", "memory/user.slice"),
                                             ("v2", "user.slice")])
def test_the_own_cgroup_is_where_the_controller_is(tree: str, where: str) -> None:
    found = recorded(tree)
    own = found.own("memory", PROC_CGROUP_HYBRID)
    assert own == found.root / where / "user-0.slice" / "session-3.scope"


def test_no_own_cgroup_without_the_controller(tmp_path: Path) -> None:
    assert Cgroups(root=tmp_path, mountinfo="").own("memory", "0::/\n") is None


@pytest.mark.parametrize("tree", ["v1", "hybrid", "v2"])
def test_remove_takes_the_cgroup_out_of_every_hierarchy(tree: str, tmp_path: Path) -> None:
    # rmdir takes a real cgroup with its files; here the recorded tree's directories only
    found = recorded(tree, tmp_path)
    for hierarchy in found.hierarchies:
        (hierarchy.path / "paas-ab12" / "web-1").mkdir(parents=True)
        (hierarchy.path / "paas-cd34" / "web-1").mkdir(parents=True)
    found.remove("paas-ab12")
    assert not list(tmp_path.rglob("paas-ab12"))
    assert len(list(tmp_path.rglob("paas-cd34/web-1"))) == len(found.hierarchies)
    assert len(found.hierarchies) == (1 if tree == "v2" else 11 if tree == "v1" else 12)


def test_an_escaped_mount_point_and_a_mount_elsewhere(tmp_path: Path) -> None:
    mounts = ("30 23 0:26 / /sys/fs/cgroup/my\\040memory rw - cgroup cgroup rw,memory\n"
              "31 23 0:27 / /mnt/cgroup2 rw - cgroup2 none rw\n")
    found = Cgroups(root=tmp_path, mountinfo=mounts)
    memory = found.hierarchy("memory")
    assert memory is not None and memory.path == tmp_path / "my memory"
    assert found.layout == Layout.V1


def test_the_oci_cgroups_path_is_the_directory_read_on_v2(monkeypatch: pytest.MonkeyPatch,
                                                          tmp_path: Path) -> None:
    """runc's cgroupfs driver puts cgroupsPath below the v2 root: the runtime reads there."""
    runtime = Runtime(Settings(home=tmp_path))
    runtime.install_id = "ab12"
    runtime.cgroups = recorded("v2")
    monkeypatch.setattr(cgroups, "on_host", lambda: runtime.cgroups)
    config = oci.ContainerConfig(hostname="web-1", uid=1000, args=["true"], env={},
                                 app_source=tmp_path, memory_mb=512, pids_limit=256,
                                 cgroups_path=f"/{runtime._cgroup_name('web-1')}")
    spec = oci.config_json(config)
    assert spec["linux"]["cgroupsPath"].lstrip("/") == DYNO
    assert spec["linux"]["resources"]["memory"] == {"limit": 512 * MB, "swap": 512 * MB}
    assert runtime.memory_mb("web-1") == pytest.approx((52342784 + 4194304) / MB)
    assert runtime.oom_kills("web-1") == 2
    assert runtime.cpu_percent("web-1") is None  # the first sample
    assert runtime.memory_mb("web-9") == 0.0 and runtime.cpu_percent("web-9") is None
