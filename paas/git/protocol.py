"""The synchronous half of the git smart protocol: dulwich work, run in worker threads.

Receive-pack is split in two, unlike dulwich's ReceivePackHandler (which moves refs as soon as
the pack is in): `prepare_push` parses the commands, validates them and adds the pushed objects
to the object store; the deploy, and with it the ref update, happens afterwards, elsewhere.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import IO, Any

from dulwich.errors import GitProtocolError, HangupException
from dulwich.objects import Commit, Tree, valid_hexsha
from dulwich.protocol import (
    SIDE_BAND_CHANNEL_DATA,
    SIDE_BAND_CHANNEL_PROGRESS,
    Protocol,
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


@dataclass
class Command:
    update: RefUpdate
    reason: str | None = None  # why it is refused; None while it may still be deployed


@dataclass
class PreparedPush:
    capabilities: frozenset[bytes] = frozenset()
    commands: list[Command] = field(default_factory=list)
    unpack: str = "ok"
    messages: list[str] = field(default_factory=list)  # progress lines to show before deploying

    @property
    def deployable(self) -> list[RefUpdate]:
        return [c.update for c in self.commands if c.reason is None]


def service_header(service: str) -> bytes:
    return pkt_line(f"# service={service}\n".encode()) + pkt_line(None)


def receive_pack_advertisement(repo_path: Path) -> bytes:
    with Repo(str(repo_path)) as repo:
        refs = sorted((n, s) for n, s in repo.get_refs().items() if n.startswith(b"refs/"))
    if not refs:
        refs = [(b"capabilities^{}", ZERO_SHA.encode())]
    lines = [format_ref_line(refs[0][0], refs[0][1], list(RECEIVE_CAPABILITIES))]
    lines += [format_ref_line(name, sha) for name, sha in refs[1:]]
    return b"".join(pkt_line(line) for line in lines) + pkt_line(None)


def prepare_push(repo_path: Path, body: IO[bytes], too_large: str | None = None) -> PreparedPush:
    """Read the commands, validate them, and add the pack's objects without moving any ref.

    `too_large` is set when the body was cut off at the size limit: then nothing is ingested
    and every command is refused with that message.
    """
    proto = Protocol(body.read, _no_write)
    try:
        push = _read_commands(proto)
    except (GitProtocolError, HangupException, ValueError) as e:
        if too_large:
            return PreparedPush(unpack="push too large", messages=[too_large])
        raise GitProtocolError(f"bad receive-pack request: {e}") from e
    if too_large:
        _refuse_all(push, "push too large")
        push.messages.append(too_large)
        return push
    with Repo(str(repo_path)) as repo:
        for command in push.commands:
            command.reason = _refusal(repo, command.update)
        if push.deployable:
            _ingest(repo, body, push)
        for command in push.commands:
            if command.reason is None:
                command.reason = _missing_objects(repo, command.update.new)
    push.messages += sorted({c.reason for c in push.commands if c.reason == PUSH_MAIN_HINT})
    return push


def _no_write(data: bytes) -> None:
    raise AssertionError("the request side is read-only")


def _read_commands(proto: Protocol) -> PreparedPush:
    push = PreparedPush()
    first = True
    while (line := proto.read_pkt_line()) is not None:
        if line.startswith(b"shallow "):
            continue
        if first:
            line, caps = extract_capabilities(line)
            push.capabilities = frozenset(caps)
            first = False
        old, new, ref = line.rstrip(b"\n").split(b" ")
        if not (valid_hexsha(old) and valid_hexsha(new)):
            raise GitProtocolError(f"invalid command: {line!r}")
        push.commands.append(Command(RefUpdate(ref.decode(), old.decode(), new.decode())))
    return push


def _refusal(repo: Repo, update: RefUpdate) -> str | None:
    if update.ref not in DEPLOYABLE_REFS:
        return PUSH_MAIN_HINT
    if update.new == ZERO_SHA:
        return "deleting the deployed branch is not allowed"
    current = repo.refs.as_dict().get(update.ref.encode(), ZERO_SHA.encode()).decode()
    if current != update.old:
        return "fetch first: the branch changed since you last fetched"
    return None


def _ingest(repo: Repo, body: IO[bytes], push: PreparedPush) -> None:
    store: Any = repo.object_store
    before = set(Path(store.path).glob("tmp_pack_*"))
    try:
        store.add_thin_pack(body.read, None)
    except Exception as e:  # a bad pack must become `unpack <error>`, whatever dulwich raises
        for leftover in set(Path(store.path).glob("tmp_pack_*")) - before:
            with contextlib.suppress(OSError):
                os.remove(leftover)
        push.unpack = " ".join(str(e).split()) or type(e).__name__
        _refuse_all(push, "unpacker error")


def _missing_objects(repo: Repo, sha: str) -> str | None:
    try:
        commit = repo[sha.encode()]
        if not isinstance(commit, Commit) or not isinstance(repo[commit.tree], Tree):
            return f"{sha} is not a commit"
    except KeyError:
        return f"missing objects for {sha}"
    return None


def _refuse_all(push: PreparedPush, reason: str) -> None:
    for command in push.commands:
        if command.reason is None:
            command.reason = reason


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
    return " ".join(text.split()) or "rejected"


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
