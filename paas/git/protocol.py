"""The git wire protocol as the receiver speaks it: pkt-lines read from an async byte stream,
push commands and their validation, the ref advertisement, report-status and side-band
(dulwich's framing), and dulwich's upload-pack for fetches over HTTP.

Receive-pack is split in two, unlike dulwich's ReceivePackHandler (which moves refs as soon as
the pack is in): the commands are read and validated here, the objects are checked and added
by `paas.git.objects`, and the deploy, with it the ref update, happens afterwards, elsewhere.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any

from dulwich.errors import GitProtocolError
from dulwich.objects import valid_hexsha
from dulwich.protocol import (
    SIDE_BAND_CHANNEL_DATA,
    SIDE_BAND_CHANNEL_PROGRESS,
    ReceivableProtocol,
    extract_capabilities,
    format_ref_line,
    pkt_line,
)
from dulwich.repo import Repo
from dulwich.server import Backend, UploadPackHandler

from paas.git.types import RefUpdate

ZERO_SHA = "0" * 40
DEPLOYABLE_REFS = ("refs/heads/main", "refs/heads/master")
RECEIVE_CAPABILITIES = (b"report-status", b"side-band-64k", b"ofs-delta", b"agent=paas")
PUSH_MAIN_HINT = "only main or master can be deployed; push with: git push paas HEAD:main"
APP_NAME = re.compile(r"[a-z][a-z0-9-]{1,29}")
MAX_COMMANDS = 100
MAX_PKT = 65520
CHUNK = 1 << 16


class ByteStream:
    """An async byte source read first as pkt-lines, then as a pack; counts what it read."""

    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = b""
        self.received = 0

    async def read_some(self) -> bytes:
        """What is buffered, else the next chunk; b"" at the end."""
        if self._buffer:
            data, self._buffer = self._buffer, b""
            return data
        async for chunk in self._chunks:
            if chunk:
                self.received += len(chunk)
                return chunk
        return b""

    async def read_exactly(self, size: int) -> bytes:
        while len(self._buffer) < size:
            chunk = await self.read_some()
            if not chunk:
                raise GitProtocolError("the client hung up in the middle of a request")
            self._buffer += chunk
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    async def drain(self, bound: int) -> None:
        """Reads to the end (up to `bound` bytes), so a client still sending hears the answer."""
        while self.received <= bound and await self.read_some():
            pass


async def read_pkt_line(stream: ByteStream) -> bytes | None:
    """One pkt-line's payload; None for a flush-pkt."""
    header = await stream.read_exactly(4)
    try:
        size = int(header, 16)
    except ValueError:
        raise GitProtocolError(f"invalid pkt-line length {header!r}") from None
    if size == 0:
        return None
    if size < 4 or size > MAX_PKT:
        raise GitProtocolError(f"invalid pkt-line length {size}")
    return await stream.read_exactly(size - 4)


@dataclass
class Command:
    update: RefUpdate
    reason: str | None = None  # why it is refused; None while it may still be deployed


@dataclass
class PreparedPush:
    capabilities: frozenset[bytes] = frozenset()
    commands: list[Command] = field(default_factory=list)
    unpack: str = "ok"
    too_large: bool = False
    messages: list[str] = field(default_factory=list)  # progress lines to show before deploying

    @property
    def deployable(self) -> list[RefUpdate]:
        return [c.update for c in self.commands if c.reason is None]

    @property
    def sends_pack(self) -> bool:
        return any(c.update.new != ZERO_SHA for c in self.commands)

    def refuse_all(self, reason: str) -> None:
        for command in self.commands:
            if command.reason is None:
                command.reason = reason


async def read_commands(stream: ByteStream) -> PreparedPush:
    """The command list up to its flush-pkt; each command is checked, not yet applied."""
    push = PreparedPush()
    first = True
    while (line := await read_pkt_line(stream)) is not None:
        if line.startswith(b"shallow "):
            continue
        if first:
            line, caps = extract_capabilities(line)
            push.capabilities = frozenset(caps)
            first = False
        push.commands.append(Command(_parse_command(line)))
        if len(push.commands) > MAX_COMMANDS:
            raise GitProtocolError(f"more than {MAX_COMMANDS} ref updates in one push")
    for command in push.commands:
        command.reason = refusal(command.update)
    push.messages += sorted({c.reason for c in push.commands if c.reason == PUSH_MAIN_HINT})
    return push


def _parse_command(line: bytes) -> RefUpdate:
    parts = line.rstrip(b"\n").split(b" ")
    if len(parts) != 3 or not (valid_hexsha(parts[0]) and valid_hexsha(parts[1])):
        raise GitProtocolError(f"invalid command: {line[:200]!r}")
    old, new, ref = parts
    return RefUpdate(ref.decode("utf-8", "replace"), old.decode(), new.decode())


# git check-ref-format's rules: no control characters, space, ~ ^ : ? * [ \, no "..", "@{",
# no component starting with "." or ending with ".lock", no "//", no trailing "/" or ".".
_BAD_REF = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]|\.\.|@\{|//|/\.|\.lock(/|$)|^\.|[/.]$|^@$")


def valid_ref_name(name: str) -> bool:
    return (name.startswith("refs/") and "\ufffd" not in name and len(name) <= 255
            and not _BAD_REF.search(name))


def refusal(update: RefUpdate) -> str | None:
    if not valid_ref_name(update.ref):
        return "invalid ref name"
    if update.ref not in DEPLOYABLE_REFS:
        return PUSH_MAIN_HINT
    if update.new == ZERO_SHA:
        return "deleting the deployed branch is not allowed"
    return None


def valid_app_name(name: str) -> bool:
    return APP_NAME.fullmatch(name) is not None


def service_header(service: str) -> bytes:
    return pkt_line(f"# service={service}\n".encode()) + pkt_line(None)


def receive_pack_advertisement(repo_path: Path) -> bytes:
    with Repo(str(repo_path)) as repo:
        refs: list[tuple[bytes, bytes]] = sorted(
            (n, s) for n, s in repo.get_refs().items() if n.startswith(b"refs/"))
    if not refs:
        refs = [(b"capabilities^{}", ZERO_SHA.encode())]
    lines = [format_ref_line(refs[0][0], refs[0][1], list(RECEIVE_CAPABILITIES))]
    lines += [format_ref_line(name, sha) for name, sha in refs[1:]]
    return b"".join(pkt_line(line) for line in lines) + pkt_line(None)


def report_status(push: PreparedPush, results: dict[str, str | None]) -> bytes:
    """The report-status section, on side-band channel 1 if the client asked for side-band."""
    if b"report-status" not in push.capabilities:
        return b""
    lines = [f"unpack {push.unpack}\n".encode()]
    for command in push.commands:
        reason = results.get(command.update.ref, command.reason)
        if reason is None:
            lines.append(f"ok {command.update.ref}\n".encode())
        else:
            lines.append(f"ng {command.update.ref} {_one_line(reason)}\n".encode())
    report = b"".join(pkt_line(line) for line in lines) + pkt_line(None)
    if b"side-band-64k" in push.capabilities:
        return sideband(SIDE_BAND_CHANNEL_DATA, report) + pkt_line(None)
    return report


def progress(push: PreparedPush, line: str) -> bytes:
    if b"side-band-64k" not in push.capabilities:
        return b""
    return sideband(SIDE_BAND_CHANNEL_PROGRESS, (line.rstrip("\n") + "\n").encode())


def sideband(channel: int, data: bytes) -> bytes:
    chunk = 65515
    return b"".join(
        pkt_line(bytes([channel]) + data[i : i + chunk]) for i in range(0, len(data), chunk)
    )


def _one_line(text: str) -> str:
    return " ".join(text.split())[:500] or "rejected"


class _OneRepo(Backend):
    def __init__(self, repo: Repo) -> None:
        self.repo = repo

    def open_repository(self, path: str) -> Any:
        return self.repo


def upload_pack(repo_path: Path, request: bytes | None) -> bytes:
    """Run dulwich's upload-pack statelessly; `request` None only advertises the refs."""
    out = BytesIO()
    with Repo(str(repo_path)) as repo:
        proto = ReceivableProtocol(BytesIO(request or b"").read, out.write)
        handler = UploadPackHandler(
            _OneRepo(repo), ["/"], proto, stateless_rpc=True, advertise_refs=request is None
        )
        handler.handle()
    return out.getvalue()
