"""Network interfaces and namespaces that a paas installation left on this host and that no
running paas process owns any more (a `paas up` killed, a PAAS_HOME deleted before `paas down`).
They are harmless until one's subnet is used again; each is listed with how to remove it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from paas.doctor import Finding, passed, problem
from paas.runtime import network
from paas.settings import Settings, install_id_of

AREA = "leftovers"
# Interface and namespace names carry the installation's id (Settings.install_id).
BRIDGE = re.compile(r"^pb([0-9a-f]{4})\d+$")
DEFAULT_HOME = Path("/var/lib/paas")  # PAAS_HOME when it is not set (paas/settings.py)
ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,59}-[a-z0-9]+$")  # a dyno's or a build's id
NETNS = re.compile(r"^[pb]([0-9a-f]{4})-")


def check(settings: Settings) -> Iterator[Finding]:
    live = live_installations() | {settings.install_id}
    links = [(install, name) for install, name in _gone(network.links_with_prefix("pb"), BRIDGE,
                                                        live) if not _bridge_members(name)]
    used = _used_netns()
    namespaces = [(install, name) for install, name in _gone(network.netns_with_prefix(""),
                                                             NETNS, live)
                  if _inode(network.NETNS_DIR / name) not in used]
    mounts = _gone_mounts(live)
    if not links and not namespaces and not mounts:
        yield passed(AREA, "other installations", "nothing left by a paas that is gone")
        return
    found = links + namespaces + mounts
    ids = sorted({install for install, _ in found})
    commands = [f"ip link delete {name}" for _, name in links]
    commands += [f"ip netns delete {name}" for _, name in namespaces]
    commands += [f"umount -l {point}" for _, point in mounts]
    yield problem(AREA, "other installations",
                  f"{len(links)} bridges, {len(namespaces)} network namespaces and "
                  f"{len(mounts)} mounts of gone paas installations (install id "
                  f"{', '.join(ids)}): {', '.join(name for _, name in found[:6])}",
                  "; ".join(commands[:6]) + (" ..." if len(commands) > 6 else ""), fatal=False)


def _gone(names: list[str], pattern: re.Pattern[str], live: set[str]) -> list[tuple[str, str]]:
    found = []
    for name in names:
        match = pattern.match(name)
        install = match and next(group for group in match.groups() if group)
        if install and install not in live:
            found.append((install, name))
    return found


def live_installations() -> set[str]:
    """The install ids of every running process started with a PAAS_HOME (or
    PAAS_RUNTIME_HOME): the platform's services and the dyno monitors that outlive them."""
    found = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            environ = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        values = dict(item.split(b"=", 1) for item in environ if b"=" in item)
        homes = [values[name] for name in (b"PAAS_RUNTIME_HOME", b"PAAS_HOME") if values.get(name)]
        for home in homes:
            found.add(install_id_of(Path(home.decode(errors="replace"))))
        if not homes and _is_paas_process(proc):
            found.add(install_id_of(DEFAULT_HOME))
    return found


def _is_paas_process(proc: Path) -> bool:
    try:
        cmdline = (proc / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return any(part.startswith((b"paas.", b"router"))
               or part.endswith((b"/paas", b"/paas-dyno-monitor")) for part in cmdline)


def _bridge_members(bridge: str) -> list[str]:
    return network.links_with_prefix("", master=bridge)


def _gone_mounts(live: set[str]) -> list[tuple[str, str]]:
    """Mounts under a runtime home's dynos/ or a home's builds/ (a dyno's disk, a build's
    workspace) whose installation is not running, outermost first."""
    found: list[tuple[str, Path]] = []
    for point in sorted(_mount_points(), key=lambda p: len(p.parts)):
        home = _home_of(point)
        if home is None or any(point.is_relative_to(outer) for _, outer in found):
            continue
        if (install := install_id_of(home)) not in live:
            found.append((install, point))
    return [(install, str(point)) for install, point in found]


def _mount_points() -> set[Path]:
    with open("/proc/self/mountinfo") as info:
        return {Path(line.split()[4].encode().decode("unicode_escape")) for line in info}


def _home_of(point: Path) -> Path | None:
    """/var/lib/paas for /var/lib/paas/dynos/web-1-ab12/disk (or .../builds/<id>/...)."""
    parts = point.parts
    for index, part in enumerate(parts[:-1]):
        if part in ("dynos", "builds") and index > 0 and ID.match(parts[index + 1]):
            return Path(*parts[:index])
    return None


def _used_netns() -> set[int]:
    """The network namespaces some process lives in (their inodes)."""
    found = set()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            found.add(_inode(proc / "ns" / "net"))
    return found


def _inode(path: Path) -> int:
    try:
        return path.stat().st_ino
    except OSError:
        return -1
