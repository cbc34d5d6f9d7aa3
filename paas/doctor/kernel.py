"""Kernel features dynos stand on: overlayfs, network namespaces, veth pairs, bridges,
netfilter (nftables), seccomp, and the cgroup hierarchy with its controllers."""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

from paas.doctor import Finding, passed, problem
from paas.settings import Settings

AREA = "kernel"


def check(settings: Settings) -> Iterator[Finding]:
    yield _overlayfs()
    yield _netns()
    yield _link("veth", ["type", "veth", "peer", "name"], "veth")
    yield _link("bridge", ["type", "bridge"], "bridge")
    yield _netfilter()
    yield _seccomp()
    yield from _cgroups()


def _filesystems() -> set[str]:
    try:
        return {line.split()[-1] for line in Path("/proc/filesystems").read_text().splitlines()}
    except OSError:
        return set()


def _overlayfs() -> Finding:
    if "overlay" in _filesystems():
        return passed(AREA, "overlayfs", "the kernel has overlayfs (a dyno's /app)")
    subprocess.run(["modprobe", "overlay"], capture_output=True, check=False)
    if "overlay" in _filesystems():
        return passed(AREA, "overlayfs", "overlayfs loaded (modprobe overlay)")
    return problem(AREA, "overlayfs", "the kernel has no overlayfs: dynos cannot mount /app",
                   "modprobe overlay; echo overlay >> /etc/modules")


def _netns() -> Finding:
    if Path("/proc/self/ns/net").exists() and _ip("netns", "list")[0]:
        return passed(AREA, "network namespaces", "each dyno gets a network namespace")
    return problem(AREA, "network namespaces", "no network namespaces (or no `ip netns`)",
                   "apt-get install iproute2; a kernel with CONFIG_NET_NS")


def _link(kind: str, args: list[str], check: str) -> Finding:
    """Made for real and deleted: the only proof that the kernel can."""
    name = f"pdoc{secrets.token_hex(4)}"  # two doctors at once must not collide
    extra = [f"{name}p"] if kind == "veth" else []
    made, error = _ip("link", "add", name, *args, *extra)
    _ip("link", "delete", name)
    if made:
        return passed(AREA, check, f"{kind} links can be made")
    return problem(AREA, check, f"cannot make a {kind} link: {error}",
                   f"modprobe {kind}; run paas as root (CAP_NET_ADMIN)")


def _netfilter() -> Finding:
    try:
        result = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True,
                                timeout=10, check=False)
    except FileNotFoundError:
        return problem(AREA, "netfilter", "nft is not installed: dynos cannot be isolated",
                       "apt-get install nftables")
    if result.returncode != 0:
        return problem(AREA, "netfilter", f"nft cannot list tables: {result.stderr.strip()}",
                       "modprobe nf_tables; run paas as root")
    return passed(AREA, "netfilter", "nftables works (dyno and build isolation)")


def _seccomp() -> Finding:
    status = Path("/proc/self/status").read_text()
    if "Seccomp_filters:" in status or "Seccomp:" in status:
        return passed(AREA, "seccomp", "the kernel filters system calls (dyno seccomp profile)")
    return problem(AREA, "seccomp", "the kernel has no seccomp: runc cannot apply the dyno "
                   "profile", "a kernel with CONFIG_SECCOMP_FILTER")


def _cgroups() -> Iterator[Finding]:
    from paas import cgroups

    host = cgroups.on_host()
    missing = [name for name in ("memory", "pids", "cpu") if not host.has(name)]
    if host.layout == cgroups.Layout.NONE:
        yield problem(AREA, "cgroups", "no cgroup file system at /sys/fs/cgroup",
                      "mount -t cgroup2 none /sys/fs/cgroup (or boot a systemd host)")
    elif missing:
        yield problem(AREA, "cgroups", f"cgroup {host.layout}: no {', '.join(missing)} "
                      "controller: dyno limits and R14/R15 need them",
                      "boot with cgroup_enable=memory (kernel command line); on cgroup v2, "
                      "enable them in the root's cgroup.subtree_control")
    else:
        yield passed(AREA, "cgroups", f"cgroup {host.layout} with memory, pids and cpu")


def _ip(*args: str) -> tuple[bool, str]:
    try:
        result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10,
                                check=False)
    except FileNotFoundError:
        return False, "ip is not installed"
    return result.returncode == 0, result.stderr.strip()
