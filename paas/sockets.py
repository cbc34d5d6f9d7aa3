"""Who listens where, read from /proc: the TCP sockets listening on given ports and the
processes that hold them (the router finding an nginx of its own, `paas doctor` a port taken)."""

from __future__ import annotations

import os
from pathlib import Path

LISTEN = "0A"  # the LISTEN state in /proc/net/tcp


def listening_inodes(ports: set[int]) -> set[str]:
    """The inodes of the TCP sockets (IPv4 and IPv6) listening on any of ports."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            port = int(fields[1].rsplit(":", 1)[1], 16)
            if fields[3] == LISTEN and port in ports:
                inodes.add(fields[9])
    return inodes


def socket_holders(inodes: set[str]) -> set[int]:
    """The processes holding any of these sockets."""
    wanted = {f"socket:[{inode}]" for inode in inodes}
    holders: set[int] = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fds = list((proc / "fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(fd) in wanted:
                    holders.add(int(proc.name))
                    break
            except OSError:
                continue
    return holders
