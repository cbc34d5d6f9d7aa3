"""Memory cgroups (v1) of the platform's own services, so that no single request can take the
host down: each service `paas up` runs gets `paas-<install id>-services/<service>` with the
limit of its setting (PAAS_API_MEMORY_MB, ...). The kernel's OOM killer then acts inside that
cgroup only; `paas up` reads the cgroup's OOM-kill count to say why a service died.

What a service starts in a session of its own (dyno monitors and `runc run`, nginx, a build's
`runc run`) is not the service: it goes back to the cgroup `paas up` itself runs in, so it
neither counts against the service's limit nor keeps the cgroup from being removed. Dynos and
build containers have cgroups of their own anyway (runc's absolute cgroupsPath, under
`paas-<install id>/`, never below a service's)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from paas.settings import Settings

MEMORY_HIERARCHY = Path("/sys/fs/cgroup/memory")
MB = 1024 * 1024
SETTINGS = {"api": "PAAS_API_MEMORY_MB", "worker": "PAAS_WORKER_MEMORY_MB",
            "agent": "PAAS_AGENT_MEMORY_MB", "router": "PAAS_ROUTER_MEMORY_MB",
            "redis": "PAAS_REDIS_MEMORY_MB"}


def limit_mb(settings: Settings, service: str) -> int:
    """The service's limit (0: none). A service the table does not know has none."""
    name = SETTINGS.get(service)
    return getattr(settings, name.removeprefix("PAAS_").lower()) if name else 0


def available() -> bool:
    return (MEMORY_HIERARCHY / "cgroup.procs").is_file()


def group_root(settings: Settings) -> Path:
    return MEMORY_HIERARCHY / f"paas-{settings.install_id}-services"


def own_cgroup() -> Path:
    """The memory cgroup this process is in (where detached processes go back to)."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            return MEMORY_HIERARCHY / path.lstrip("/")
    return MEMORY_HIERARCHY


@dataclass
class ServiceCgroup:
    service: str
    path: Path
    limit_mb: int
    home: Path  # where processes that leave the service's session go
    oom_kills_seen: int = 0

    @property
    def setting(self) -> str:
        return SETTINGS.get(self.service, "")

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
        limit = str(self.limit_mb * MB) if self.limit_mb > 0 else "-1"
        swap = self.path / "memory.memsw.limit_in_bytes"
        if swap.exists():  # memory+swap is never below memory: lift it, set memory, then it
            _write(swap, "-1")
        _write(self.path / "memory.limit_in_bytes", limit)
        if swap.exists():
            _write(swap, limit)
        self.oom_kills_seen = self.oom_kills()

    def join(self) -> None:
        """Moves the calling process in; async-signal-safe enough for a preexec function
        (raw syscalls only, no Python I/O objects)."""
        fd = os.open(self.path / "cgroup.procs", os.O_WRONLY)
        try:
            os.write(fd, str(os.getpid()).encode())
        finally:
            os.close(fd)

    def oom_kills(self) -> int:
        try:
            text = (self.path / "memory.oom_control").read_text()
        except OSError:
            return self.oom_kills_seen
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return self.oom_kills_seen

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
                 say: Callable[[str], None]) -> None:
        self.settings = settings
        self.say = say
        self.session = os.getsid(0)
        self.groups: dict[str, ServiceCgroup] = {}
        self.home: Path | None = None  # where detached processes go; None: no cgroups
        if not available():
            say("memory cgroups for the services skipped: no cgroup v1 memory hierarchy")
            return
        home, root = own_cgroup(), group_root(settings)
        for service in services:
            group = ServiceCgroup(service, root / service, limit_mb(settings, service), home)
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
        with contextlib.suppress(OSError):
            group_root(self.settings).rmdir()


def remove_leftovers(settings: Settings) -> None:
    """For `paas down`: the cgroups a `paas up` killed by SIGKILL left behind."""
    root = group_root(settings)
    if not root.is_dir():
        return
    home = own_cgroup()
    for path in root.iterdir():
        if path.is_dir():
            ServiceCgroup(path.name, path, 0, home).remove()
    with contextlib.suppress(OSError):
        root.rmdir()


def _nothing() -> None:
    return None
