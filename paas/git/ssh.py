"""Git over SSH (asyncssh), in the API process's event loop, loaded at the first connection
to the SSH port (`paas/git/ssh_listen.py` listens until then).

    git push ssh://git@HOST:2222/APP.git main      (git-receive-pack '/APP.git')
    git clone ssh://git@HOST:2222/APP.git          (git-upload-pack '/APP.git')

A client logs in with a public key that a user added (`paas keys:add`); any user name is
accepted, the key says who it is. Only those two commands run, for apps the key's user may
access; a shell, a pty, any other command, subsystem or forwarding is refused. Receive-pack
is the same push as over HTTP (`paas.git.session`): streamed progress on side-band 2, the
report at the end, the deploy unaffected by the client going away. Upload-pack is C git's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shlex
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import asyncssh

from paas.errors import PaasError
from paas.git import protocol, session
from paas.git.protocol import ByteStream
from paas.git.types import GitBackend
from paas.git_helpers import git_env
from paas.sourcetree import SourceLimits

log = logging.getLogger(__name__)
Lifespan = Callable[[Any], AbstractAsyncContextManager[None]]

SERVICES = ("git-receive-pack", "git-upload-pack")
HOST_KEY_NAME = "ssh_host_ed25519_key"
CHUNK = 1 << 16
IDLE_TIMEOUT = 600  # seconds without a byte from the client while it should be sending
UPLOAD_PACK_TIMEOUT = 600


def host_key(home: Path) -> asyncssh.SSHKey:
    """The server's host key, made on first start and kept in PAAS_HOME."""
    path = home / HOST_KEY_NAME
    if not path.exists():
        key = asyncssh.generate_private_key("ssh-ed25519")
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key.export_private_key())
        os.replace(tmp, path)
        (home / f"{HOST_KEY_NAME}.pub").write_bytes(key.export_public_key())
    return asyncssh.read_private_key(str(path))


async def start_server(backend: GitBackend, home: Path, sock: socket.socket,
                       max_push_bytes: int, source_limits: SourceLimits | None = None
                       ) -> asyncssh.SSHAcceptor:
    """Serves on `sock`, a listening socket (`paas/git/ssh_listen.py` binds it)."""
    git = _GitSsh(backend, max_push_bytes, source_limits)
    return await asyncssh.create_server(
        lambda: _Server(backend), sock=sock,
        server_host_keys=[host_key(home)],
        process_factory=git.handle,
        encoding=None,
        allow_pty=False,
        agent_forwarding=False,
        x11_forwarding=False,
        allow_scp=False,
        login_timeout=30,
        keepalive_interval=30,
    )


class _Server(asyncssh.SSHServer):
    def __init__(self, backend: GitBackend) -> None:
        self.backend = backend
        self.conn: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.conn = conn

    def begin_auth(self, username: str) -> bool:
        return True

    def public_key_auth_supported(self) -> bool:
        return True

    async def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        # Called again with the signature before a login succeeds: the last key validated
        # is the one the client proved it holds.
        user = await asyncio.to_thread(self.backend.user_for_key, key)
        if user is None or self.conn is None:
            return False
        self.conn.set_extra_info(paas_user=user)
        return True


class _GitSsh:
    def __init__(self, backend: GitBackend, max_push_bytes: int,
                 source_limits: SourceLimits | None = None) -> None:
        self.backend = backend
        self.max_push_bytes = max_push_bytes
        self.source_limits = source_limits

    async def handle(self, process: asyncssh.SSHServerProcess) -> None:
        try:
            code = await self._run(process)
        except PaasError as e:
            code = _fail(process, e.message)
        except (asyncssh.Error, ConnectionError, BrokenPipeError):
            return
        except Exception:
            log.exception("ssh session failed")
            code = _fail(process, "the platform failed on this request; its API log says why")
        with contextlib.suppress(asyncssh.Error, ConnectionError, BrokenPipeError, OSError):
            process.exit(code)

    async def _run(self, process: asyncssh.SSHServerProcess) -> int:
        user = process.get_extra_info("paas_user")
        service, app = _parse(process.command, process.subsystem)
        if service is None:
            return _fail(process, app)
        write = service == "git-receive-pack"
        repo, pusher = await asyncio.to_thread(self._authorized_repo, app, user, write)
        if write:
            return await self._receive_pack(process, app, repo, pusher)
        return await _upload_pack(process, repo)

    def _authorized_repo(self, app: str, user: Any, write: bool) -> tuple[Path, str]:
        pusher = self.backend.authorize_user(app, user, write) or ""
        return self.backend.repo_path(app), pusher

    async def _receive_pack(self, process: asyncssh.SSHServerProcess, app: str,
                            repo: Path, pusher: str) -> int:
        process.stdout.write(await asyncio.to_thread(protocol.receive_pack_advertisement, repo))
        stream = ByteStream(_chunks(process.stdin))
        push = await session.receive(repo, stream, self.max_push_bytes, self.source_limits)
        if push.too_large:
            await stream.drain(4 * self.max_push_bytes + (64 << 20))
        if not push.commands:  # the client had nothing to push
            return 0
        events = session.start_deploys(self.backend, app, repo, push, pusher)
        async for data in session.result(push, events):
            if data:
                process.stdout.write(data)
                await process.stdout.drain()
        return 0


def _parse(command: str | None, subsystem: str | None) -> tuple[str | None, str]:
    """(service, app), or (None, why it is refused)."""
    hint = ("paas serves git here, nothing else: git push ssh://git@HOST:PORT/APP.git main "
            "(no shell, no other commands)")
    if subsystem or not command:
        return None, hint
    try:
        words = shlex.split(command)
    except ValueError:
        return None, hint
    if len(words) == 3 and words[0] == "git" and f"git-{words[1]}" in SERVICES:
        words = [f"git-{words[1]}", words[2]]
    if len(words) != 2 or words[0] not in SERVICES:
        return None, hint
    app = words[1].strip("/").removeprefix("~/").removesuffix("/").removesuffix(".git")
    if not protocol.valid_app_name(app):
        return None, f"no app named {app[:40]!r}: `paas apps` lists yours"
    return words[0], app


def _fail(process: asyncssh.SSHServerProcess, message: str) -> int:
    with contextlib.suppress(asyncssh.Error, ConnectionError, BrokenPipeError, OSError):
        process.stderr.write(f"paas: {message}\n".encode())
    return 1


async def _chunks(reader: asyncssh.SSHReader) -> AsyncIterator[bytes]:
    while True:
        chunk = await asyncio.wait_for(reader.read(CHUNK), IDLE_TIMEOUT)
        if not chunk:
            return
        yield chunk


async def _upload_pack(process: asyncssh.SSHServerProcess, repo: Path) -> int:
    env = git_env(repo)
    version = (process.env or {}).get("GIT_PROTOCOL")
    if isinstance(version, str | bytes):
        env["GIT_PROTOCOL"] = version.decode() if isinstance(version, bytes) else version
    proc = await asyncio.create_subprocess_exec(
        "git", "upload-pack", "--strict", f"--timeout={UPLOAD_PACK_TIMEOUT}", str(repo),
        env=env, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL)
    assert proc.stdin is not None and proc.stdout is not None
    feeding = asyncio.create_task(_pump_in(process.stdin, proc.stdin))
    try:
        while data := await proc.stdout.read(CHUNK):
            process.stdout.write(data)
            await process.stdout.drain()
        return await proc.wait()
    finally:
        feeding.cancel()
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


async def _pump_in(reader: asyncssh.SSHReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
        writer.close()
