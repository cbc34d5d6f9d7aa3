"""Add-on servers (Postgres, Redis) under runc: one container per add-on, started like a dyno
(its own uid, no capabilities, seccomp, memory and pids limits, the native monitor) with
its data on a loop-mounted ext4 image of the plan's disk, kept under the runtime home:

    addons/<name>/data.img          the data filesystem (sparse; grown when the plan grows)
    addons/<name>/data/             where it is mounted while the add-on exists on this node
    addons/<name>/data.lock         flock'ed by the server's holder for the server's whole life
    addons/<name>/addon-<name>/     the container: config.json, rootfs, output.log, exit-code
    addons/<name>/record.json       its generation and the app networks it is linked to

Never two servers on one data directory: a start takes the data lock first (refused while
anything holds it: Postgres's own postmaster.pid check does not see across PID namespaces),
and `flock -n` holds it around the monitor, so it is released only when the server and its
monitor are gone. The server's network namespace has one interface per attached app, on
that app's bridge at a reserved address (`network.addon_ip`); detaching deletes it."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from paas import safefs
from paas.builder import disk
from paas.errors import Conflict, Invalid, Unavailable
from paas.runtime import host, native, network, oci
from paas.runtime.addonlinks import addons_dir, container_id
from paas.runtime.containers import LIVE_STATES, Runtime, check_id
from paas.runtime.dynolog import DynoLog
from paas.settings import Settings
from paas.wire import AddonLink, DesiredAddon

ENTRY = Path(__file__).resolve().parent.parent / "addons" / "server" / "entry.py"
START_TIMEOUT = 30.0
LOCK_REFUSED = 75  # flock's exit status when the data lock is held (-E)


@dataclass(frozen=True)
class ServerStatus:
    name: str
    generation: str
    running: bool
    exit_code: int | None
    started_at: float
    links: tuple[AddonLink, ...]


class AddonDir:
    def __init__(self, settings: Settings, name: str) -> None:
        check_id(container_id(name))
        self.name = name
        self.root = addons_dir(settings) / name
        self.image = self.root / "data.img"
        self.data = self.root / "data"
        self.lock = self.root / "data.lock"
        self.server = self.root / container_id(name)
        self.record = self.root / "record.json"

    def read_record(self) -> dict[str, Any] | None:
        try:
            return json.loads(safefs.read_file(self.root, self.record.name) or b"")
        except (OSError, ValueError, safefs.UnsafePath):
            return None

    def write_record(self, record: dict[str, Any]) -> None:
        safefs.write_atomic(self.root, self.record.name, json.dumps(record).encode())

    def exit_code(self) -> int | None:
        try:
            return int(safefs.read_file(self.server, "exit-code") or b"")
        except (OSError, ValueError, safefs.UnsafePath):
            return None


def data_held(lock: Path) -> bool:
    """Whether something holds the data directory's lock (a live server and its monitor)."""
    fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing releases a lock we took
    return False


class AddonServers:
    """The runc side of the add-on servers of one node."""

    def __init__(self, settings: Settings, runtime: Runtime) -> None:
        self.settings = settings
        self.runtime = runtime
        self.launched: dict[str, subprocess.Popen[bytes]] = {}

    # ---- what runs ------------------------------------------------------------------------

    def list(self) -> dict[str, ServerStatus]:
        root = addons_dir(self.settings)
        if not root.is_dir():
            return {}
        found = {}
        for path in sorted(root.iterdir()):
            if not path.is_dir():
                continue
            addon = AddonDir(self.settings, path.name)
            record = addon.read_record()
            if record is None or not addon.server.is_dir():
                continue
            found[addon.name] = self._status(addon, record)
        return found

    def _status(self, addon: AddonDir, record: dict[str, Any]) -> ServerStatus:
        code = addon.exit_code()
        running = code is None and (
            self.runtime.runc.state(container_id(addon.name)) in LIVE_STATES
            or data_held(addon.lock))
        return ServerStatus(
            name=addon.name, generation=record.get("generation", ""), running=running,
            exit_code=None if running else (code if code is not None else -1),
            started_at=record.get("started_at", 0.0),
            links=tuple(AddonLink.from_json(link) for link in record.get("links", [])))

    def output_tail(self, name: str, size: int = 2000) -> str:
        try:
            log = AddonDir(self.settings, name).server / "output.log"
            return DynoLog(log).tail(size).decode(errors="replace").strip()
        except OSError:
            return ""

    def memory_mb(self, name: str) -> float:
        return self.runtime.memory_mb(container_id(name))

    # ---- starting ---------------------------------------------------------------------------

    def start(self, desired: DesiredAddon) -> ServerStatus:
        """Starts the add-on's server; Conflict while another holds its data."""
        addon = AddonDir(self.settings, desired.name)
        addon.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        if data_held(addon.lock) or (self.runtime.runc.state(container_id(desired.name))
                                     in LIVE_STATES):
            raise Conflict(f"the data directory of {desired.name} is in use by a running "
                           "server: it is stopped before another starts (never two on one "
                           "data directory)")
        self._remove_container(addon)
        self._prepare_data(addon, desired)
        addon.write_record({"name": desired.name, "generation": desired.generation,
                            "service": desired.service, "uid": desired.uid,
                            "started_at": time.time(), "links": []})
        netns = self._netns(desired.name)
        network.create_netns(netns)
        self.sync_links(desired.name, desired.links)
        self._write_bundle(addon, desired, netns)
        self._launch(addon)
        return self._wait_started(addon)

    def _prepare_data(self, addon: AddonDir, desired: DesiredAddon) -> None:
        addon.data.mkdir(exist_ok=True, mode=0o700)
        if addon.image.exists() and addon.image.stat().st_size < desired.disk_mb * 1024 * 1024:
            disk.unmount(addon.data)  # no server runs on it: a larger plan's disk
            grow(addon.image, desired.disk_mb)
        if not disk.is_mounted(addon.data):
            if not addon.image.exists():
                disk._make_image(addon.image, desired.disk_mb, journal=True)
            try:
                disk._run(["mount", "-t", "ext4", "-o", "loop,nosuid,nodev,noatime",
                           str(addon.image), str(addon.data)])
            except disk.DiskError as err:
                raise Unavailable(f"cannot mount the data of {addon.name}: {err}") from None
        # The filesystem's root is the server's; nothing below it is root's business.
        os.chown(addon.data, desired.uid, desired.uid)
        addon.data.chmod(0o700)

    def _write_bundle(self, addon: AddonDir, desired: DesiredAddon, netns: str) -> None:
        addon.server.mkdir(mode=0o700)
        rootfs = addon.server / "rootfs"
        hostname = container_id(desired.name)
        oci.write_rootfs(rootfs, oci.etc_files(desired.uid, hostname,
                                               f"127.0.0.1\tlocalhost\n127.0.1.1\t{hostname}\n"))
        for name in ("data", "addon"):
            (rootfs / name).mkdir(exist_ok=True)
        empty = addon.server / "app"
        empty.mkdir(mode=0o755)
        config = oci.ContainerConfig(
            hostname=hostname, uid=desired.uid,
            args=["/usr/bin/python3", "-I", "/addon/entry.py"],
            env={**desired.env, "HOSTNAME": hostname, "HOME": "/data"},
            app_source=empty, memory_mb=desired.memory_mb, pids_limit=desired.pids,
            cgroups_path=f"/{self.runtime._cgroup_name(container_id(desired.name))}",
            netns_path=str(network.NETNS_DIR / netns), tmp_mb=64,
            extra_mounts=[oci.bind(addon.data, "/data", readonly=False),
                          oci.bind(ENTRY, "/addon/entry.py")])
        document = oci.config_json(config)
        document["process"]["cwd"] = "/data"
        safefs.write_atomic(addon.server, "config.json", json.dumps(document).encode())
        os.close(safefs.open_append(addon.server, "output.log"))

    def _launch(self, addon: AddonDir) -> None:
        """`flock -n` holds the data lock around the native monitor for the server's life."""
        program = ["flock", "-n", "-E", str(LOCK_REFUSED), str(addon.lock),
                   native.dyno_monitor(), str(addon.server), self.runtime.runc.binary,
                   str(self.runtime.runc.root), str(self.settings.dyno_log_unshipped_max_bytes)]
        if self.settings.detached_cgroup:
            program = ["/bin/sh", "-c", 'echo $$ > "$0/cgroup.procs" 2>/dev/null; exec "$@"',
                       self.settings.detached_cgroup, *program]
        log = safefs.open_append(addon.server, "output.log")
        try:
            self.launched[addon.name] = subprocess.Popen(
                program, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
                start_new_session=True)
        finally:
            os.close(log)

    def _wait_started(self, addon: AddonDir) -> ServerStatus:
        deadline = time.monotonic() + START_TIMEOUT
        holder = self.launched[addon.name]
        while time.monotonic() < deadline:
            if holder.poll() == LOCK_REFUSED:
                raise Conflict(f"the data directory of {addon.name} is in use by a running "
                               "server: this start was refused")
            state = self.runtime.runc.state(container_id(addon.name))
            if state == "running" or addon.exit_code() is not None:
                record = addon.read_record() or {}
                return self._status(addon, record)
            time.sleep(0.05)
        raise Unavailable(f"the server of {addon.name} did not start: "
                          f"{self.output_tail(addon.name) or 'no output'}")

    # ---- links to app networks --------------------------------------------------------------

    def sync_links(self, name: str, links: tuple[AddonLink, ...]) -> bool:
        """The server's interfaces made those of `links`: a detached app's goes at once.
        True when something changed."""
        addon = AddonDir(self.settings, name)
        record = addon.read_record()
        if record is None:
            return False
        have = {int(link["slot"]): AddonLink.from_json(link) for link in record["links"]}
        want = {link.slot: link for link in links}
        netns = self._netns(name)
        changed = False
        for slot, link in have.items():
            if want.get(slot) != link:
                self._delete_link(name, slot)
                changed = True
        for slot, link in want.items():
            if have.get(slot) != link:
                self._add_link(name, netns, link)
                changed = True
        if changed:
            addon.write_record({**record, "links": [link.to_json() for link in links]})
        return changed

    def _add_link(self, name: str, netns: str, link: AddonLink) -> None:
        subnet = network.app_network(self.settings.dyno_subnet, link.slot)
        bridge = network.bridge_name(self.settings.install_id, link.slot)
        with self.runtime._lock():
            network.ensure_bridge(bridge, subnet)
            network.isolate_bridge(self.settings, bridge, subnet)
            veth = self._veth(name, link.slot)
            if network.link_exists(veth):
                network.ip_cmd("link", "delete", veth, check=False)
            network.add_link(netns, veth, f"a{link.slot}", bridge, link.ip, subnet.prefixlen)

    def _delete_link(self, name: str, slot: int) -> None:
        veth = self._veth(name, slot)
        if network.link_exists(veth):
            network.ip_cmd("link", "delete", veth, check=False)

    def _veth(self, name: str, slot: int) -> str:
        return network.veth_name(self.settings.install_id, f"{container_id(name)}-{slot}")

    def _netns(self, name: str) -> str:
        return network.netns_name(self.settings.install_id, container_id(name))

    # ---- stopping ---------------------------------------------------------------------------

    def stop(self, name: str, grace: float, signal: str) -> None:
        """`signal` first (Postgres: INT, its fast shutdown), SIGKILL after `grace`; returns
        once the server and its monitor are gone (the data lock is free)."""
        addon = AddonDir(self.settings, name)
        cid = container_id(name)
        if self.runtime.runc.state(cid) in LIVE_STATES:
            self.runtime.runc.kill_all(cid, signal)
            if not self._wait_gone(addon, grace):
                self.runtime.runc.kill_all(cid, "KILL")
                self._wait_gone(addon, 10)
        self._reap(name)

    def _wait_gone(self, addon: AddonDir, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not data_held(addon.lock) and (self.runtime.runc.state(container_id(addon.name))
                                              not in LIVE_STATES):
                return True
            time.sleep(0.05)
        return False

    def _reap(self, name: str) -> None:
        holder = self.launched.pop(name, None)
        if holder is not None and holder.poll() is None:
            try:
                holder.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.launched[name] = holder

    def remove_server(self, name: str, grace: float = 30, signal: str = "TERM") -> None:
        """The server stopped and its container gone; its data stays (mounted)."""
        addon = AddonDir(self.settings, name)
        self.stop(name, grace, signal)
        self._remove_container(addon)
        record = addon.read_record()
        if record is not None:
            for link in record.get("links", []):
                self._delete_link(name, int(link["slot"]))
            addon.write_record({**record, "links": []})
        network.delete_netns(self._netns(name))

    def _remove_container(self, addon: AddonDir) -> None:
        cid = container_id(addon.name)
        self.runtime.runc.delete(cid)
        if addon.server.exists():
            host.unmount(addon.server)
            shutil.rmtree(addon.server, ignore_errors=True)
        self.runtime.cgroups.remove(self.runtime._cgroup_name(cid))

    def destroy(self, name: str) -> None:
        """The server and its data, gone for good."""
        addon = AddonDir(self.settings, name)
        if not addon.root.exists():
            return
        self.remove_server(name, grace=5)
        if data_held(addon.lock):
            raise Conflict(f"{name}'s server is still running: its data stays")
        disk.unmount(addon.data)
        shutil.rmtree(addon.root, ignore_errors=True)


def grow(image: Path, size_mb: int) -> None:
    """A larger plan's disk: the image (unmounted) grown and its filesystem with it."""
    with open(image, "r+b") as handle:
        handle.truncate(size_mb * 1024 * 1024)
    try:
        disk._run(["e2fsck", "-f", "-p", str(image)])
        disk._run(["resize2fs", str(image)])
    except disk.DiskError as err:
        raise Invalid(f"cannot grow {image.name}: {err}") from None
