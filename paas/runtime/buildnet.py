"""The network of one build: a namespace with nothing but its loopback, and the build's egress
proxy (paas/runtime/egress.py) listening on that loopback. The proxy's listening socket is made
inside the build's namespace by a short-lived thread that enters it, while the proxy itself
runs in the worker, in the host's namespace: so the build reaches the outside world only
through the proxy's rules, and no address of the host or of a dyno at all.

A build holds an flock on a file named after its namespace for as long as it runs: a namespace
whose lock is free was left by a worker that died, and the orphan sweep removes it."""

from __future__ import annotations

import ctypes
import fcntl
import ipaddress
import os
import secrets
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from paas.errors import Unavailable
from paas.runtime import network
from paas.runtime.egress import EGRESS_PORT, Destinations, EgressProxy, parse_allow
from paas.settings import Settings

CLONE_NEWNET = 0x40000000
_LIBC = ctypes.CDLL(None, use_errno=True)


@dataclass(frozen=True)
class BuildNetwork:
    """What a build container needs: the namespace to join and the proxy settings."""

    netns_path: str
    env: dict[str, str]


def _lock_path(settings: Settings, netns: str) -> Path:
    locks = settings.home / "build-nets"
    locks.mkdir(parents=True, exist_ok=True, mode=0o700)
    return locks / f"{netns}.lock"


def _try_lock(path: Path) -> IO[str] | None:
    handle = open(path, "a")  # noqa: SIM115 - held for the build's life, closed by the caller
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def listen_inside(netns_path: str, port: int) -> socket.socket:
    """A listening socket on the loopback of another network namespace."""
    made: list[socket.socket | BaseException] = []

    def make() -> None:
        # Only this thread enters the namespace, and it ends right after.
        try:
            fd = os.open(netns_path, os.O_RDONLY)
            try:
                if _LIBC.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns {netns_path}")
            finally:
                os.close(fd)
            sock = socket.create_server(("127.0.0.1", port), backlog=128)
            made.append(sock)
        except BaseException as error:  # handed to the caller's thread
            made.append(error)

    thread = threading.Thread(target=make, name="egress-listen")
    thread.start()
    thread.join()
    if isinstance(made[0], BaseException):
        raise Unavailable(f"cannot listen inside the build's network: {made[0]}")
    return made[0]


@contextmanager
def build_network(settings: Settings, install_id: str,
                  log: Callable[[str], None]) -> Iterator[BuildNetwork]:
    name = network.build_netns_name(install_id, secrets.token_hex(6))
    lock_path = _lock_path(settings, name)
    lock = _try_lock(lock_path)
    assert lock is not None  # a fresh name
    try:
        netns_path = network.create_build_netns(name)
        destinations = Destinations([ipaddress.ip_network(settings.dyno_subnet)],
                                    parse_allow(settings.egress_allow))
        proxy = EgressProxy(listen_inside(netns_path, EGRESS_PORT), destinations, log)
        proxy.start()
        try:
            yield BuildNetwork(netns_path, proxy.env)
        finally:
            proxy.stop()
    finally:
        network.delete_netns(name)
        lock_path.unlink(missing_ok=True)
        lock.close()


def remove_stale_build_networks(settings: Settings, install_id: str) -> int:
    """The namespaces of builds whose worker died: nobody holds their lock."""
    removed = 0
    for name in network.netns_with_prefix(network.build_netns_name(install_id, "")):
        lock_path = _lock_path(settings, name)
        lock = _try_lock(lock_path)
        if lock is None:
            continue
        try:
            network.delete_netns(name)
            lock_path.unlink(missing_ok=True)
            removed += 1
        finally:
            lock.close()
    return removed
