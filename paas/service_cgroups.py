"""Memory cgroups (v1, or v2) of the platform's own services, so that no single request can take the
host down: each service `paas up` runs gets `paas-<install id>-services/<service>` with the
limit of its setting (PAAS_API_MEMORY_MB, ...; a service hosting several roles, `node`
(paas/roles.py), the sum of theirs). The kernel's OOM killer then acts inside that
cgroup only; `paas up` reads the cgroup's OOM-kill count to say why a service died.

What a service starts in a session of its own (dyno monitors and `runc run`, nginx, a build's
`runc run`) is not the service: it goes back to the cgroup `paas up` itself runs in, so it
neither counts against the service's limit nor keeps the cgroup from being removed. Dynos and
build containers have cgroups of their own anyway (runc's absolute cgroupsPath, under
`paas-<install id>/`, never below a service's).

The memory controller's hierarchy decides the files: v1 (also on a hybrid host) limits with
memory.limit_in_bytes and memory.memsw.limit_in_bytes and counts kills in memory.oom_control;
v2 with memory.max and memory.swap.max, kills in memory.events, and the memory controller
enabled in the parents' cgroup.subtree_control."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from paas import cgroups
from paas.settings import Settings

MB = 1024 * 1024
ROLE_SETTINGS = {"api": "PAAS_API_MEMORY_MB", "worker": "PAAS_WORKER_MEMORY_MB",
                 "agent": "PAAS_AGENT_MEMORY_MB", "router": "PAAS_ROUTER_MEMORY_MB",
                 "redis": "PAAS_REDIS_MEMORY_MB"}


def settings_of(roles: Sequence[str]) -> tuple[str, ...]:
    return tuple(ROLE_SETTINGS[role] for role in roles if role in ROLE_SETTINGS)


def limit_mb(settings: Settings, roles: Sequence[str]) -> int:
    """The limit of a service hosting `roles` (0: none): the sum of their settings, so each
    setting keeps counting what its role may use; none if one of them is 0, or if the table
    knows none of them."""
    limits = [getattr(settings, name.removeprefix("PAAS_").lower())
              for name in settings_of(roles)]
    return sum(limits) if limits and all(limit > 0 for limit in limits) else 0


def memory_hierarchy() -> cgroups.Hierarchy | None:
    """The host's memory controller, if a cgroup can be made and joined there."""
    memory = cgroups.on_host().hierarchy("memory")
    return memory if memory is not None and (memory.path / "cgroup.procs").is_file() else None


def group_root(settings: Settings, memory: cgroups.Hierarchy) -> Path:
    return memory.path / f"paas-{settings.install_id}-services"


def own_cgroup() -> Path:
    """The memory cgroup this process is in (where detached processes go back to)."""
    own = cgroups.on_host().own("memory")
    assert own is not None, "only asked where there is a memory controller"
    return own


@dataclass
class ServiceCgroup:
    service: str
    path: Path
    limit_mb: int
    home: Path  # where processes that leave the service's session go
    oom_kills_seen: int = 0
    v2: bool = False  # the memory controller is in the unified (cgroup2) tree
    roles: tuple[str, ...] = ()  # what it hosts (paas/roles.py); () : the service itself

    @property
    def setting(self) -> str:
        return " + ".join(settings_of(self.roles or (self.service,)))

    def create(self) -> None:
        """Makes the cgroup with its limit; a cgroup it made is removed again if that fails."""
        made = not self.path.exists()
        self.path.mkdir(parents=True, exist_ok=True)
        try:
            self._limit()
        except OSError:
            if made:
                with contextlib.suppress(OSError):
                    self.path.rmdir()
            raise

    def _limit(self) -> None:
        if self.v2:
            self._limit_v2()
        else:
            self._limit_v1()
        self.oom_kills_seen = self.oom_kills()

    def _limit_v1(self) -> None:
        limit = str(self.limit_mb * MB) if self.limit_mb > 0 else "-1"
        swap = self.path / "memory.memsw.limit_in_bytes"
        if swap.exists():  # memory+swap is never below memory: lift it, set memory, then it
            _write(swap, "-1")
        _write(self.path / "memory.limit_in_bytes", limit)
        if swap.exists():
            _write(swap, limit)

    def _limit_v2(self) -> None:
        # Children get memory.* files only once their parent delegates the controller; the
        # root usually does already (systemd), paas-<id>-services never does by itself.
        for parent in (self.path.parent.parent, self.path.parent):
            with contextlib.suppress(OSError):
                _write(parent / "cgroup.subtree_control", "+memory")
        limited = self.limit_mb > 0
        _write(self.path / "memory.max", str(self.limit_mb * MB) if limited else "max")
        swap = self.path / "memory.swap.max"  # v2 counts swap apart: none, as v1's memsw
        if swap.exists():
            _write(swap, "0" if limited else "max")

    def join(self) -> None:
        """Moves the calling process in; async-signal-safe enough for a preexec function
        (raw syscalls only, no Python I/O objects)."""
        fd = os.open(self.path / "cgroup.procs", os.O_WRONLY)
        try:
            os.write(fd, str(os.getpid()).encode())
        finally:
            os.close(fd)

    def oom_kills(self) -> int:
        counts = cgroups.keyed(self.path / ("memory.events" if self.v2 else "memory.oom_control"))
        return counts.get("oom_kill", self.oom_kills_seen)

    def new_oom_kills(self) -> int:
        """OOM kills in the cgroup since the last call."""
        now = self.oom_kills()
        new, self.oom_kills_seen = max(0, now - self.oom_kills_seen), now
        return new

    def pids(self) -> list[int]:
        try:
            return [int(p) for p in (self.path / "cgroup.procs").read_text().split()]
        except OSError:
            return []

    def release_detached(self, session: int) -> None:
        """Processes of another session than the service's go back to `home`."""
        for pid in self.pids():
            with contextlib.suppress(OSError):
                if os.getsid(pid) != session:
                    _write(self.home / "cgroup.procs", str(pid))

    def remove(self) -> None:
        for pid in self.pids():
            with contextlib.suppress(OSError):
                _write(self.home / "cgroup.procs", str(pid))
        with contextlib.suppress(OSError):
            self.path.rmdir()


def _write(path: Path, value: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


class ServiceCgroups:
    """The cgroups of one `paas up`: created at start, checked every loop, removed at exit."""

    def __init__(self, settings: Settings, services: list[str],
                 say: Callable[[str], None],
                 roles: Mapping[str, Sequence[str]] | None = None) -> None:
        """`roles`: the roles a service hosts (`python -m paas.roles`), if not just itself."""
        self.settings = settings
        self.say = say
        self.session = os.getsid(0)
        self.groups: dict[str, ServiceCgroup] = {}
        self.home: Path | None = None  # where detached processes go; None: no cgroups
        self.memory = memory_hierarchy()
        if self.memory is None:
            say("memory cgroups for the services skipped: no cgroup memory controller")
            return
        home, root = own_cgroup(), group_root(settings, self.memory)
        for service in services:
            hosts = tuple((roles or {}).get(service, ())) or (service,)
            group = ServiceCgroup(service, root / service, limit_mb(settings, hosts), home,
                                  v2=self.memory.version == 2, roles=hosts)
            try:
                group.create()
            except OSError as error:
                say(f"{service}: no memory cgroup ({error}); it runs without a limit")
                continue
            self.groups[service] = group
        if self.groups:
            self.home = home

    def preexec(self, service: str) -> Callable[[], None]:
        group = self.groups.get(service)
        return group.join if group is not None else _nothing

    def describe(self, service: str) -> str:
        group = self.groups.get(service)
        if group is None or group.limit_mb <= 0:
            return ""
        return f"its memory limit of {group.limit_mb} MB ({group.setting})"

    def check(self) -> set[str]:
        """Sends detached processes home; returns the services with new OOM kills (said)."""
        killed: set[str] = set()
        for service, group in self.groups.items():
            group.release_detached(self.session)
            if count := group.new_oom_kills():
                killed.add(service)
                self.say(f"{service}: {count} process(es) OOM-killed: the service went over "
                         f"{self.describe(service) or 'the host memory'}")
        return killed

    def remove(self) -> None:
        for group in self.groups.values():
            group.remove()
        if self.memory is not None:
            with contextlib.suppress(OSError):
                group_root(self.settings, self.memory).rmdir()


def remove_leftovers(settings: Settings) -> None:
    """For `paas down`: the cgroups a `paas up` killed by SIGKILL left behind."""
    memory = memory_hierarchy()
    if memory is None or not (root := group_root(settings, memory)).is_dir():
        return
    home = own_cgroup()
    for path in root.iterdir():
        if path.is_dir():
            ServiceCgroup(path.name, path, 0, home, v2=memory.version == 2).remove()
    with contextlib.suppress(OSError):
        root.rmdir()


def _nothing() -> None:
    return None
