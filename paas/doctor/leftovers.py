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
NETNS = re.compile(r"^[pb]([0-9a-f]{4})-")


def check(settings: Settings) -> Iterator[Finding]:
    live = live_installations() | {settings.install_id}
    links = [(install, name) for install, name in _gone(network.links_with_prefix("pb"), BRIDGE,
                                                        live) if not _bridge_members(name)]
    used = _used_netns()
    namespaces = [(install, name) for install, name in _gone(network.netns_with_prefix(""),
                                                             NETNS, live)
                  if _inode(network.NETNS_DIR / name) not in used]
    if not links and not namespaces:
        yield passed(AREA, "other installations", "nothing left by a paas that is gone")
        return
    ids = sorted({install for install, _ in links + namespaces})
    commands = [f"ip link delete {name}" for _, name in links]
    commands += [f"ip netns delete {name}" for _, name in namespaces]
    yield problem(AREA, "other installations",
                  f"{len(links)} interfaces and {len(namespaces)} network namespaces of gone "
                  f"paas installations (install id {', '.join(ids)}): "
                  f"{', '.join(name for _, name in (links + namespaces)[:6])}",
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
        home = values.get(b"PAAS_RUNTIME_HOME") or values.get(b"PAAS_HOME")
        if home:
            found.add(install_id_of(Path(home.decode(errors="replace"))))
        elif _is_paas_process(proc):
            found.add(install_id_of(DEFAULT_HOME))
    return found


def _is_paas_process(proc: Path) -> bool:
    try:
        cmdline = (proc / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return any(part.startswith((b"paas.", b"router")) or part.endswith(b"/paas")
               for part in cmdline)


def _bridge_members(bridge: str) -> list[str]:
    return network.links_with_prefix("", master=bridge)


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
