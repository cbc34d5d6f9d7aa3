"""The host's cgroups, whichever hierarchy it boots with: v1 (a hierarchy per controller under
/sys/fs/cgroup), hybrid (v1 controllers plus a controller-less cgroup2 at
/sys/fs/cgroup/unified) or v2 (one cgroup2 tree at /sys/fs/cgroup).

The layout is read from mountinfo; every read takes a cgroup path relative to the hierarchy
root (runc's cgroupsPath without its leading slash, "paas-<install id>/<container>"), which
with runc's cgroupfs driver is the same directory in each v1 hierarchy and in the v2 tree.
A cgroup that is gone reads as nothing (0, or None for CPU), never as an error.

runc sets the limits itself (it knows v2); this module reads the counters, removes the
cgroups and tells what is there (the controllers, swap accounting). Standard library only:
the agent, the dyno monitors and `paas up` load it."""

from __future__ import annotations

import contextlib
import functools
import os
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

MOUNTED_AT = Path("/sys/fs/cgroup")
# Options of a v1 mount that are not controllers ("name=systemd" names a controller-less one).
V1_OPTIONS = frozenset({"rw", "ro", "xattr", "noprefix", "clone_children", "cpuset_v2_mode"})
MOUNTINFO = Path("/proc/self/mountinfo")
PROC_CGROUP = Path("/proc/self/cgroup")


class Layout(StrEnum):
    NONE = "none"  # no cgroup file system mounted where it is looked for
    V1 = "v1"
    HYBRID = "hybrid"  # v1 controllers, and a cgroup2 tree at unified/
    V2 = "v2"


@dataclass(frozen=True)
class Hierarchy:
    path: Path  # where it is mounted (below the Cgroups' root)
    version: int  # 1 or 2
    controllers: frozenset[str]  # v1: from its mount options; v2: its cgroup.controllers


def parse_mountinfo(text: str, mounted_at: Path, root: Path) -> list[Hierarchy]:
    """The cgroup mounts at or below mounted_at, their paths moved from mounted_at to root."""
    found = []
    for line in text.splitlines():
        mount, _, fs = line.partition(" - ")
        fields, (fstype, *rest) = mount.split(), fs.split() or [""]
        if fstype not in ("cgroup", "cgroup2") or len(fields) < 5:
            continue
        point = Path(fields[4].encode().decode("unicode_escape"))
        if not point.is_relative_to(mounted_at):
            continue
        path = root / point.relative_to(mounted_at)
        if fstype == "cgroup2":
            found.append(Hierarchy(path, 2, frozenset(_words(path / "cgroup.controllers"))))
        else:
            found.append(Hierarchy(path, 1, _v1_controllers(rest[-1] if rest else "")))
    return found


class Cgroups:
    """The cgroup hierarchies of a host (or of a recorded tree: root and its mountinfo)."""

    def __init__(self, root: Path = MOUNTED_AT, mountinfo: str | None = None,
                 mounted_at: Path = MOUNTED_AT) -> None:
        self.root = root
        text = MOUNTINFO.read_text() if mountinfo is None else mountinfo
        self.hierarchies = parse_mountinfo(text, mounted_at, root)

    @property
    def layout(self) -> Layout:
        if any(h.version == 2 and h.path == self.root for h in self.hierarchies):
            return Layout.V2
        if any(h.version == 1 for h in self.hierarchies):
            v2 = any(h.version == 2 for h in self.hierarchies)
            return Layout.HYBRID if v2 else Layout.V1
        return Layout.NONE

    def controllers(self) -> frozenset[str]:
        """Every controller some hierarchy offers ("memory", "pids", "cpu", ...)."""
        return frozenset().union(*(h.controllers for h in self.hierarchies))

    def has(self, controller: str) -> bool:
        return self.hierarchy(controller) is not None

    def hierarchy(self, controller: str) -> Hierarchy | None:
        """Where the controller is: its v1 hierarchy, else the v2 tree that lists it."""
        ordered = sorted(self.hierarchies, key=lambda h: h.version)
        return next((h for h in ordered if controller in h.controllers), None)

    def unified(self) -> Hierarchy | None:
        return next((h for h in self.hierarchies if h.version == 2), None)

    # ---- reads -------------------------------------------------------------------------

    def memory_bytes(self, cgroup: str) -> int:
        """Anonymous memory and tmpfs/shm: what the dyno's processes hold, not the page cache
        the kernel can take back (v1 total_rss + total_shmem; v2 anon + shmem, both counted
        for the cgroup and its children). memory.current would add page cache and kernel
        memory, and a dyno that reads files would look full."""
        found = self._file("memory", cgroup, "memory.stat")
        if found is None:
            return 0
        path, version = found
        keys = ("total_rss", "total_shmem") if version == 1 else ("anon", "shmem")
        stat = keyed(path)
        return sum(stat.get(key, 0) for key in keys)

    def oom_kills(self, cgroup: str) -> int:
        """Processes the kernel killed at the cgroup's memory limit."""
        found = self._file("memory", cgroup, "memory.oom_control", "memory.events")
        return keyed(found[0]).get("oom_kill", 0) if found else 0

    def cpu_usage_ns(self, cgroup: str) -> int | None:
        """CPU time used, in ns (v1 cpuacct.usage; v2 cpu.stat usage_usec, which is there
        without the cpu controller); None if the cgroup is gone."""
        cpuacct = self.hierarchy("cpuacct")  # a v1 controller only
        if cpuacct is not None:
            value = _read(cpuacct.path / cgroup / "cpuacct.usage").strip()
            return int(value) if value.isdigit() else None
        unified = self.unified()
        if unified is None:
            return None
        usec = keyed(unified.path / cgroup / "cpu.stat").get("usage_usec")
        return None if usec is None else usec * 1000

    def pids(self, cgroup: str) -> int:
        found = self._file("pids", cgroup, "pids.current")
        value = _read(found[0]).strip() if found else ""
        return int(value) if value.isdigit() else 0

    def swap_accounted(self) -> bool:
        """Whether a memory limit can cover swap too (OCI's memory.swap): v1 has
        memory.memsw.*; v2 has memory.swap.max in every cgroup but the root, unless the
        kernel runs with swapaccount=0."""
        memory = self.hierarchy("memory")
        if memory is None:
            return False
        if memory.version == 1:
            return (memory.path / "memory.memsw.limit_in_bytes").exists()
        return any((child / "memory.swap.max").exists() for child in _dirs(memory.path))

    # ---- cgroups of this process, removal ----------------------------------------------

    def own(self, controller: str, proc_cgroup: str | None = None) -> Path | None:
        """The directory of the cgroup this process is in, for the controller."""
        where = self.hierarchy(controller)
        if where is None:
            return None
        text = PROC_CGROUP.read_text() if proc_cgroup is None else proc_cgroup
        for line in text.splitlines():
            _, controllers, path = line.split(":", 2)
            if (controllers == "" if where.version == 2 else controller in controllers.split(",")):
                return where.path / path.lstrip("/")
        return where.path

    def remove(self, name: str) -> None:
        """rmdir the cgroup `name` and its children in every hierarchy (v2: the one tree)."""
        for hierarchy in self.hierarchies:
            top = hierarchy.path / name
            if not top.is_dir():
                continue
            for dirpath, _, _ in sorted(os.walk(top), key=lambda w: len(w[0]), reverse=True):
                with contextlib.suppress(OSError):
                    os.rmdir(dirpath)

    def _file(self, controller: str, cgroup: str, v1_name: str,
              v2_name: str | None = None) -> tuple[Path, int] | None:
        where = self.hierarchy(controller)
        if where is None:
            return None
        name = v1_name if where.version == 1 or v2_name is None else v2_name
        return where.path / cgroup / name, where.version


@functools.cache
def on_host() -> Cgroups:
    """This host's cgroups (read once: the hierarchies do not change while paas runs)."""
    try:
        return Cgroups()
    except OSError:
        return Cgroups(mountinfo="")


def _v1_controllers(options: str) -> frozenset[str]:
    return frozenset(o for o in options.split(",") if o not in V1_OPTIONS and "=" not in o)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _words(path: Path) -> list[str]:
    return _read(path).split()


def keyed(path: Path) -> dict[str, int]:
    """A flat-keyed file ("key value" lines: memory.stat, memory.events, cpu.stat, ...)."""
    values = {}
    for line in _read(path).splitlines():
        key, _, value = line.partition(" ")
        if value.strip().isdigit():
            values[key] = int(value)
    return values


def _dirs(path: Path) -> list[Path]:
    try:
        return [p for p in path.iterdir() if p.is_dir()]
    except OSError:
        return []
