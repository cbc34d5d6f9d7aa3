"""The SSH git port, listening from the API's start, with asyncssh (~10 MiB with the
cryptography it loads) imported only when the first client connects: most installs push over
HTTP, and an idle API should not hold an SSH stack nobody called.

The listening socket is bound at start (a taken port fails the API's start, as before); the
first connection waiting on it loads `paas.git.ssh` in a thread and hands it the socket, and
asyncssh then accepts that connection and all later ones."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from paas.git.types import GitBackend
from paas.settings import Settings
from paas.sourcetree import SourceLimits

Lifespan = Callable[[Any], AbstractAsyncContextManager[None]]
BACKLOG = 100


def listening_socket(host: str, port: int) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


async def _first_connection(sock: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    called = asyncio.Event()
    loop.add_reader(sock.fileno(), called.set)
    try:
        await called.wait()
    finally:
        loop.remove_reader(sock.fileno())


def ssh_lifespan(backend: GitBackend, settings: Settings) -> Lifespan:
    """A Starlette lifespan that serves git over SSH beside the app (PAAS_SSH_PORT 0: off)."""

    @contextlib.asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        if not settings.ssh_port:
            yield
            return
        sock = listening_socket(settings.ssh_host or settings.api_host, settings.ssh_port)
        servers: list[Any] = []

        async def serve() -> None:
            await _first_connection(sock)
            ssh = await asyncio.to_thread(importlib.import_module, "paas.git.ssh")
            servers.append(await ssh.start_server(
                backend, settings.home, sock, settings.max_push_bytes,
                SourceLimits.of(settings)))

        task = asyncio.create_task(serve())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            for server in servers:
                server.close()
                await server.wait_closed()
            sock.close()

    return lifespan
