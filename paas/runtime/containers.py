"""Dynos and build containers under runc.

Each dyno is started through a small detached process (its monitor: the native
paas/runtime/native/dyno-monitor.c; console.py or piped.py for an attached one-off) that runs
runc, copies the container's output into the dyno's log (bounded) and writes the exit status
to a file, so a dyno outlives the process that started it. Everything a
later process needs to find a dyno again (adoption) is on disk under settings.dynos_dir/<id>/,
a directory of root's (0700) that no dyno reaches: a dyno writes only to its disk's upper dir
(paas/runtime/dynodisk.py), through its overlay, and to a pipe.
"""

from __future__ import annotations

import fcntl
import json
import os
import queue
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import IO, Any

from paas import cgroups, outputlines, safefs
from paas.errors import Conflict, Invalid, NotFound, Unavailable
from paas.runtime import addonlinks, dynodisk, host, native, network, oci
from paas.runtime.buildnet import BuildNetwork, build_network
from paas.runtime.cpu import CpuMeter
from paas.runtime.dynolog import DynoLog
from paas.runtime.hostconfig import client_config
from paas.runtime.runc import Runc
from paas.settings import Settings

ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,59}$")
LIVE_STATES = ("created", "running", "paused")
# runc's own start; generous, as a loaded machine can take many seconds.
START_TIMEOUT = 60.0
LOST_EXIT_CODE = -1
QUEUED_LINES = 1024  # a build's lines read but not yet handed on (each at most 10 KB)


@dataclass(frozen=True)
class DynoSpec:
    id: str
    app: str
    app_index: int
    uid: int
    command: list[str]
    env: dict[str, str]
    layers: list[Path]
    memory_mb: int
    pids_limit: int
    metadata: dict[str, str]
    cpu_shares: int = 0  # 0: in proportion to the memory
    disk_mb: int = 0  # /app's writable layer and /tmp, each; 0: half the memory
    # A dyno with a terminal: (output stream, input stream) its console monitor relays.
    console: tuple[str, str] | None = None
    # An attached one-off without a terminal: the input stream its stdin is fed from.
    stdin: str | None = None


class RunState(StrEnum):
    """A dyno's container as runc and its monitor see it."""

    RUNNING = "running"  # created, running or paused under runc, or its monitor still alive
    EXITED = "exited"  # its exit code is written (LOST_EXIT_CODE when nothing wrote it)


@dataclass(frozen=True)
class DynoStatus:
    id: str
    state: RunState
    exit_code: int | None
    ip: str
    started_at: float
    metadata: dict[str, str]
    log_path: Path


@dataclass(frozen=True)
class BuildContainerSpec:
    id: str
    uid: int
    workspace: Path
    ro_binds: list[tuple[Path, str]]
    rw_binds: list[tuple[Path, str]]
    command: list[str]
    env: dict[str, str]
    memory_mb: int
    timeout: float
    # The build's own namespace and egress proxy; None shares the host's network (tests only).
    network: BuildNetwork | None = None


def check_id(container_id: str) -> None:
    if not ID_RE.match(container_id):
        raise Invalid(f"bad container id {container_id!r}: use [a-z0-9-], at most 60 characters")


def check_uid(uid: int) -> None:
    if uid <= 0:
        raise Invalid(f"containers run as a non-root uid, got {uid}")


def cpu_shares(memory_mb: int) -> int:
    return max(2, memory_mb * 1024 // 512)


def disk_mb(spec: DynoSpec) -> int:
    return spec.disk_mb or max(spec.memory_mb // 2, 16)


class DynoDir:
    """The files of one dyno under settings.dynos_dir/<id>/."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.id = path.name
        self.record = path / "metadata.json"
        self.log = path / "output.log"
        self.exit_file = path / "exit-code"
        self.pid_file = path / "monitor.pid"
        self.disk = dynodisk.DynoDisk(path / "disk")
        # The agent's own notes on the dyno (its state, when it was asked to stop), so a
        # restarted agent picks up where the last one left.
        self.notes = path / "agent.json"

    def read_record(self) -> dict[str, Any] | None:
        try:
            return json.loads(safefs.read_file(self.path, self.record.name) or b"")
        except (OSError, ValueError, safefs.UnsafePath):
            return None

    def exit_code(self) -> int | None:
        try:
            return int(safefs.read_file(self.path, self.exit_file.name) or b"")
        except (OSError, ValueError, safefs.UnsafePath):
            return None

    def init_pid(self) -> int | None:
        """The container's init as runc wrote it (a detached start: the native and console
        monitors)."""
        try:
            return int(safefs.read_file(self.path, "init.pid") or b"")
        except (OSError, ValueError, safefs.UnsafePath):
            return None

    def monitor_alive(self) -> bool:
        try:
            pid = int(self.pid_file.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return False
        return str(self.path).encode() in cmdline


class Runtime:
    _thread_lock = threading.Lock()

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.install_id = settings.install_id
        self.runc = Runc(settings.runc_root)
        self.build_root = settings.home / "build-bundles"
        # build container id -> processes the kernel killed for its memory limit (a build
        # whose shell survives an OOM-killed pip or npm still failed because of memory)
        self.build_oom_kills: dict[str, int] = {}
        self.cpu = CpuMeter()
        self.cgroups = cgroups.on_host()

    # ---- dynos -------------------------------------------------------------------------

    def start_dyno(self, spec: DynoSpec) -> DynoStatus:
        check_id(spec.id)
        check_uid(spec.uid)
        if not spec.layers:
            raise Invalid("a dyno needs at least one layer")
        dyno = DynoDir(self.settings.dynos_dir / spec.id)
        subnet = network.app_network(self.settings.dyno_subnet, spec.app_index)
        bridge = network.bridge_name(self.install_id, spec.app_index)
        with self._lock():
            if dyno.path.exists():
                raise Conflict(f"dyno {spec.id} exists")
            # Before the dyno's directory: a refused bridge must leave no dyno behind. Under
            # the lock: remove_idle_bridges cannot take it away before the record is written.
            network.ensure_bridge(bridge, subnet)
            network.isolate_bridge(self.settings, bridge, subnet)
            last = self.settings.dynos_dir / f".last-ip-{spec.app_index}"
            previous = last.read_text().strip() if last.exists() else None
            ip = network.next_free_ip(subnet, self._used_ips(spec.app_index), previous)
            last.write_text(ip)
            dyno.path.mkdir(mode=0o700)
            self._write_record(dyno, spec, ip)
        try:
            net = network.create_dyno_net(self.install_id, spec.id, bridge, ip, subnet.prefixlen)
            self._prepare_dyno_fs(dyno, spec, ip, net.netns_path)
            if spec.console:
                self._launch_console(dyno, *spec.console)
            elif spec.stdin:
                self._launch_piped(dyno, spec.stdin)
            else:
                self._launch_monitor(dyno)
            return self._wait_started(dyno)
        except BaseException:
            self.remove_dyno(spec.id)
            raise

    def list_dynos(self) -> list[DynoStatus]:
        root = self.settings.dynos_dir
        if not root.is_dir():
            return []
        states = self.runc.states()
        found = [self._status(DynoDir(path), states) for path in sorted(root.iterdir())]
        return sorted((s for s in found if s is not None), key=lambda s: (s.started_at, s.id))

    def stop_dyno(self, dyno_id: str, grace: float) -> bool:
        dyno = self._existing(dyno_id)
        if not self._is_running(dyno):
            return False
        self.runc.kill_all(dyno_id, "TERM")
        if self._wait_exited(dyno, grace):
            return False
        self.runc.kill_all(dyno_id, "KILL")
        self._wait_exited(dyno, 10)
        return True

    def remove_dyno(self, dyno_id: str) -> None:
        check_id(dyno_id)
        dyno = DynoDir(self.settings.dynos_dir / dyno_id)
        if self.runc.state(dyno_id) in LIVE_STATES:
            self.runc.kill_all(dyno_id, "KILL")
            self._wait_exited(dyno, 10)
        self.runc.delete(dyno_id)
        host.unmount(dyno.path)
        network.delete_dyno_net(
            network.netns_name(self.install_id, dyno_id),
            network.veth_name(self.install_id, dyno_id),
        )
        shutil.rmtree(dyno.path, ignore_errors=True)
        self.cgroups.remove(self._cgroup_name(dyno_id))

    def remove_idle_bridges(self) -> list[str]:
        """Removes the app bridges no dyno is on (an app destroyed or scaled to nothing);
        returns their names. A starting dyno's record is written under the same lock before
        its veth joins the bridge, so a bridge it is about to use is never taken away."""
        prefix = network.bridge_name(self.install_id, 0)[:-1]
        removed = []
        with self._lock():
            used = {record.get("app_index") for path in self.settings.dynos_dir.iterdir()
                    if path.is_dir() and (record := DynoDir(path).read_record())}
            used |= addonlinks.linked_slots(self.settings)
            for name in network.links_with_prefix(prefix):
                slot = name[len(prefix):]
                if slot.isdigit() and int(slot) not in used:
                    network.delete_bridge(self.install_id, name)
                    removed.append(name)
        return removed

    def repair_firewall(self) -> list[str]:
        """The firewall table made whole if it is not (`network.repair_firewall`); under the
        lock a dyno's start takes to make and isolate its bridge."""
        with self._lock():
            return network.repair_firewall(self.settings)

    def memory_mb(self, dyno_id: str) -> float:
        """The dyno's memory, in MB: its processes' anonymous memory and its files (tmpfs:
        its disk, /tmp, /dev/shm), which count against the same limit."""
        return self.cgroups.memory_bytes(self._cgroup_of(dyno_id)) / (1024 * 1024)

    def cpu_percent(self, dyno_id: str) -> float | None:
        """The dyno's CPU use since the last call (% of one core, from its cgroup)."""
        usage = self.cgroups.cpu_usage_ns(self._cgroup_of(dyno_id))
        return None if usage is None else self.cpu.percent(dyno_id, usage)

    def oom_kills(self, dyno_id: str) -> int:
        """How many processes of the dyno the kernel killed for its memory limit."""
        return self.cgroups.oom_kills(self._cgroup_of(dyno_id))

    def monitor_pid(self, dyno_id: str) -> int | None:
        """The pid of the dyno's monitor while it lives (None: none, it has exited, or the
        dyno is gone)."""
        check_id(dyno_id)
        dyno = DynoDir(self.settings.dynos_dir / dyno_id)
        if not dyno.monitor_alive():
            return None
        try:
            return int(dyno.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def monitor_pids(self, dyno_id: str) -> list[int]:
        """The platform's processes for one dyno: its monitor and the monitor's children
        (`runc`, while it starts the container, or for good under a Python monitor), not
        the container's init, which a native or console monitor reaps."""
        dyno = self._existing(dyno_id)
        try:
            monitor = int(dyno.pid_file.read_text().strip())
        except (OSError, ValueError):
            return []
        children = Path(f"/proc/{monitor}/task/{monitor}/children")
        try:
            pids = [int(pid) for pid in children.read_text().split()]
        except OSError:
            return [monitor]
        return [monitor, *(pid for pid in pids if pid != dyno.init_pid())]

    def _cgroup_of(self, container_id: str) -> str:
        check_id(container_id)
        return self._cgroup_name(container_id)

    # ---- builds ------------------------------------------------------------------------

    @contextmanager
    def build_network(self, log: Callable[[str], None]) -> Iterator[BuildNetwork]:
        with build_network(self.settings, self.install_id, log) as net:
            yield net

    def run_build(self, spec: BuildContainerSpec, on_line: Callable[[str], None]) -> int:
        check_id(spec.id)
        check_uid(spec.uid)
        if (self.settings.dynos_dir / spec.id).exists():
            raise Conflict(f"{spec.id} is the id of a dyno")
        bundle = self.build_root / spec.id
        self._remove_build(spec.id)
        proc: subprocess.Popen[bytes] | None = None
        try:
            self._prepare_build(bundle, spec)
            proc = subprocess.Popen(
                # --keep: the cgroup outlives the run, so its OOM-kill count can be read.
                [*self.runc.base(), "run", "--keep", "--bundle", str(bundle), spec.id],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            return self._stream(proc, spec, on_line)
        finally:
            if proc is not None:
                if proc.poll() is None:
                    self.runc.kill_all(spec.id, "KILL")
                    proc.kill()
                    proc.wait()
                assert proc.stdout is not None
                proc.stdout.close()
            self.build_oom_kills[spec.id] = self.oom_kills(spec.id)
            self._remove_build(spec.id)

    # ---- everything --------------------------------------------------------------------

    def teardown(self) -> None:
        for container_id in self.runc.states():
            self.runc.kill_all(container_id, "KILL")
            self.runc.delete(container_id)
        if self.build_root.is_dir():
            for path in self.build_root.iterdir():
                self._remove_build(path.name)
        self.teardown_node()
        home = self.settings.home.resolve()
        for point in host.mounts_under(home):
            if point != home:
                host.unmount(point)

    def teardown_node(self) -> None:
        """Everything of this runtime home (a node's dynos, network, cgroups, runc state),
        and nothing of the installation's shared home: a second agent's runtime goes while
        the platform serves on."""
        for container_id in self.runc.states():
            self.runc.kill_all(container_id, "KILL")
            self.runc.delete(container_id)
        if self.settings.dynos_dir.is_dir():
            for path in self.settings.dynos_dir.iterdir():
                if path.is_dir() and ID_RE.match(path.name):
                    self.remove_dyno(path.name)
        runtime_home = self.settings.runtime_home.resolve()
        if runtime_home != self.settings.home.resolve():
            for point in host.mounts_under(runtime_home):
                if point != runtime_home:
                    host.unmount(point)
        # The agent's crash counts: dynos started after this start from none.
        (self.settings.dynos_dir / "crashes.json").unlink(missing_ok=True)
        network.teardown_network(self.install_id)
        self.cgroups.remove(f"paas-{self.install_id}")
        shutil.rmtree(self.settings.runc_root, ignore_errors=True)

    # ---- internals: dynos --------------------------------------------------------------

    @contextmanager
    def _lock(self) -> Iterator[None]:
        self.settings.dynos_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        with self._thread_lock, open(self.settings.dynos_dir / ".lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _used_ips(self, app_index: int) -> set[str]:
        used = set()
        for path in self.settings.dynos_dir.iterdir():
            record = DynoDir(path).read_record() if path.is_dir() else None
            if record and record.get("app_index") == app_index:
                used.add(record["ip"])
        return used

    def _write_record(self, dyno: DynoDir, spec: DynoSpec, ip: str) -> None:
        record = {
            "id": spec.id,
            "app": spec.app,
            "app_index": spec.app_index,
            "uid": spec.uid,
            "ip": ip,
            "started_at": time.time(),
            "metadata": dict(spec.metadata),
        }
        safefs.write_atomic(dyno.path, dyno.record.name, json.dumps(record).encode())

    def _prepare_dyno_fs(self, dyno: DynoDir, spec: DynoSpec, ip: str, netns_path: str) -> None:
        disk = dynodisk.create(dyno.disk.root, disk_mb(spec), spec.uid, spec.layers)
        hosts = f"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n{ip}\t{spec.id}\n"
        oci.write_rootfs(disk.rootfs, oci.etc_files(spec.uid, spec.id, hosts))
        config = oci.ContainerConfig(
            hostname=spec.id,
            uid=spec.uid,
            args=spec.command,
            env=spec.env,
            app_source=disk.app,
            root_path=str(disk.rootfs.relative_to(dyno.path)),
            tmp_mb=disk_mb(spec),
            memory_mb=spec.memory_mb,
            pids_limit=spec.pids_limit,
            cgroups_path=f"/{self._cgroup_name(spec.id)}",
            netns_path=netns_path,
            cpu_shares=spec.cpu_shares or cpu_shares(spec.memory_mb),
            terminal=spec.console is not None,
        )
        config_json = json.dumps(oci.config_json(config), indent=1)
        safefs.write_atomic(dyno.path, "config.json", config_json.encode())
        os.close(safefs.open_append(dyno.path, dyno.log.name))

    def _launch_monitor(self, dyno: DynoDir) -> None:
        """The native monitor (paas/runtime/native/dyno-monitor.c): `runc run --detach`
        under it, so neither runc nor Python stays resident for the dyno's life."""
        args = [str(dyno.path), self.runc.binary, str(self.runc.root),
                str(self.settings.dyno_log_unshipped_max_bytes)]
        self._launch(dyno, [native.dyno_monitor(), *args], {})

    def _launch_python(self, dyno: DynoDir, module: str, args: list[str],
                       env: dict[str, str]) -> None:
        self._launch(dyno, [sys.executable, "-m", module, *args], env)

    def _launch(self, dyno: DynoDir, program: list[str], env: dict[str, str]) -> None:
        """A dyno's monitor, detached in a session of its own; its own errors go to the log."""
        log = safefs.open_append(dyno.path, dyno.log.name)
        command = ["setsid", "-f", *program]
        if self.settings.detached_cgroup:
            # The shell joins the cgroup, then becomes setsid, whose child is the monitor: it
            # allocates nothing where its starter is (no preexec_fn: the agent has threads).
            command = ["/bin/sh", "-c", 'echo $$ > "$0/cgroup.procs" 2>/dev/null; exec "$@"',
                       self.settings.detached_cgroup, *command]
        try:
            subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                env={**os.environ, **env},
                check=True,
            )
        finally:
            os.close(log)

    def _launch_console(self, dyno: DynoDir, output: str, input_stream: str) -> None:
        """A dyno with a terminal gets a console monitor (paas/runtime/console.py)."""
        args = [str(dyno.path), self.runc.binary, str(self.runc.root), output, input_stream]
        self._launch_python(dyno, "paas.runtime.console", args,
                            {"PAAS_CONSOLE_REDIS": self.settings.redis_url})

    def _launch_piped(self, dyno: DynoDir, input_stream: str) -> None:
        """A one-off attached without a terminal: its stdin comes from the client
        (paas/runtime/piped.py)."""
        args = [str(dyno.path), self.runc.binary, str(self.runc.root), input_stream,
                str(self.settings.dyno_log_unshipped_max_bytes)]
        self._launch_python(dyno, "paas.runtime.piped", args,
                            {"PAAS_CONSOLE_REDIS": self.settings.redis_url})

    def _wait_started(self, dyno: DynoDir) -> DynoStatus:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            state = self.runc.state(dyno.id)
            if state == "running" or dyno.exit_file.exists():
                status = self._status(dyno, {dyno.id: state} if state else {})
                if status is not None:
                    return status
            time.sleep(0.02)
        raise Unavailable(f"dyno {dyno.id} did not start: {self._log_tail(dyno)}")

    def _status(self, dyno: DynoDir, states: dict[str, str]) -> DynoStatus | None:
        record = dyno.read_record()
        if record is None:
            return None
        code = dyno.exit_code()
        if code is None and (states.get(dyno.id) in LIVE_STATES or dyno.monitor_alive()):
            state = RunState.RUNNING
        else:
            state = RunState.EXITED
            code = LOST_EXIT_CODE if code is None else code
        return DynoStatus(
            id=dyno.id,
            state=state,
            exit_code=code if state == RunState.EXITED else None,
            ip=record["ip"],
            started_at=record["started_at"],
            metadata=record.get("metadata", {}),
            log_path=dyno.log,
        )

    def _existing(self, dyno_id: str) -> DynoDir:
        check_id(dyno_id)
        dyno = DynoDir(self.settings.dynos_dir / dyno_id)
        if dyno.read_record() is None:
            raise NotFound(f"no dyno {dyno_id}")
        return dyno

    def _is_running(self, dyno: DynoDir) -> bool:
        status = self._status(dyno, {dyno.id: self.runc.state(dyno.id) or ""})
        return status is not None and status.state == RunState.RUNNING

    def _wait_exited(self, dyno: DynoDir, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            if dyno.exit_file.exists() or not self._is_running(dyno):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

    def _cgroup_name(self, container_id: str) -> str:
        return f"paas-{self.install_id}/{container_id}"

    def _log_tail(self, dyno: DynoDir) -> str:
        try:
            tail = DynoLog(dyno.log).tail(2000).decode(errors="replace")
            return tail.strip() or "no output"
        except OSError:
            return "no output"

    # ---- internals: builds -------------------------------------------------------------

    def _prepare_build(self, bundle: Path, spec: BuildContainerSpec) -> None:
        if not spec.workspace.is_dir():
            raise Invalid(f"build workspace {spec.workspace} is not a directory")
        bundle.mkdir(parents=True, mode=0o700)
        host.chown_tree(spec.workspace, spec.uid)
        for source, _ in spec.rw_binds:
            host.chown_tree(source, spec.uid)
        clients = client_config(os.environ)
        files = {**oci.etc_files(spec.uid, spec.id, ""), **clients.files, "resolv.conf": ""}
        oci.write_rootfs(bundle / "rootfs", files)
        # In its own namespace a build has no resolver: names are resolved by its proxy.
        shared = ("/etc/hosts",) if spec.network else ("/etc/hosts", "/etc/resolv.conf")
        mounts = [oci.bind(path, path) for path in shared if Path(path).exists()]
        mounts += [oci.bind(path, str(path)) for path in clients.paths]
        mounts += [oci.bind(source, target) for source, target in spec.ro_binds]
        mounts += [oci.bind(source, target, readonly=False) for source, target in spec.rw_binds]
        config = oci.ContainerConfig(
            hostname=spec.id,
            uid=spec.uid,
            args=spec.command,
            env={**clients.env, **(spec.network.env if spec.network else {}), **spec.env},
            app_source=spec.workspace,
            netns_path=spec.network.netns_path if spec.network else None,
            memory_mb=spec.memory_mb,
            pids_limit=max(self.settings.dyno_pids, 1024),
            cgroups_path=f"/{self._cgroup_name(spec.id)}",
            cpu_shares=cpu_shares(spec.memory_mb),
            extra_mounts=mounts,
        )
        (bundle / "config.json").write_text(json.dumps(oci.config_json(config), indent=1))

    def _stream(
        self,
        proc: subprocess.Popen[bytes],
        spec: BuildContainerSpec,
        on_line: Callable[[str], None],
    ) -> int:
        assert proc.stdout is not None
        # Bounded: a build printing faster than Redis takes its lines blocks on its own pipe.
        lines: queue.Queue[str | None] = queue.Queue(maxsize=QUEUED_LINES)
        stop = threading.Event()
        reader = threading.Thread(target=read_lines, args=(proc.stdout, lines, stop),
                                  daemon=True)
        reader.start()
        deadline = time.monotonic() + spec.timeout
        try:
            while (line := lines.get(timeout=max(deadline - time.monotonic(), 0.001))) is not None:
                on_line(line)
            return proc.wait(timeout=max(deadline - time.monotonic(), 1))
        except (queue.Empty, subprocess.TimeoutExpired):
            self.runc.kill_all(spec.id, "KILL")
            proc.kill()
            proc.wait()
            return 124
        finally:
            stop.set()
            reader.join(timeout=5)

    def _remove_build(self, build_id: str) -> None:
        check_id(build_id)
        self.runc.kill_all(build_id, "KILL")
        self.runc.delete(build_id)
        bundle = self.build_root / build_id
        host.unmount(bundle)
        shutil.rmtree(bundle, ignore_errors=True)
        self.cgroups.remove(self._cgroup_name(build_id))


def read_lines(stream: IO[bytes], lines: queue.Queue[str | None],
               stop: threading.Event) -> None:
    """The stream's lines, each cut to outputlines.LINE_LIMIT, then None; gives up once
    stop is set (nobody takes the lines any more)."""
    try:
        while not stop.is_set() and (line := outputlines.read_line(stream)) is not None:
            _put(lines, line, stop)
    finally:
        _put(lines, None, stop)


def _put(lines: queue.Queue[str | None], line: str | None, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            lines.put(line, timeout=0.5)
            return
        except queue.Full:
            continue
