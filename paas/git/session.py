"""One push, whatever the transport (HTTP or SSH): read and check it, deploy it in order,
and the bytes to send back while it deploys.

Push order: the deploys of one app run one at a time (a per-app lock; the API process is the
only receiver). A push that waits says so; when its turn comes, it is checked against the ref
as it is then: it deploys if it still starts from there, if it fast-forwards from there, or if
it was forced (it did not descend from what its client saw either); otherwise it is refused
like any non-fast-forward push ("fetch first"). Deploys run in tasks of their own: a client
that goes away does not cancel its build, and the backend moves the ref with the release.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from pathlib import Path
from typing import Any

from paas import sourcetree
from paas.git import objects, protocol
from paas.git.objects import PackRejected, PackTooLarge
from paas.git.protocol import ZERO_SHA, ByteStream, PreparedPush
from paas.git.types import GitBackend, PushRejected, RefUpdate
from paas.sourcetree import SourceLimits, SourceTooLarge

log = logging.getLogger(__name__)

KEEPALIVE_SECONDS = 5.0
KEEPALIVE = b"0005\x01"  # an empty side-band-1 packet, as git's receive-pack sends
FETCH_FIRST = "fetch first: the branch changed since you last fetched (git pull, then push)"

Events = asyncio.Queue[tuple[str, Any]]

# Deploys outlive the connection that started them; asyncio keeps only weak references to tasks.
_running_deploys: set[asyncio.Task[None]] = set()
_app_locks: dict[str, asyncio.Lock] = {}


async def receive(repo: Path, stream: ByteStream, limit: int,
                  source_limits: SourceLimits | None = None) -> PreparedPush:
    """Reads the commands and the pack; the accepted objects are in the repository after it,
    refused ones never are. A commit whose tree breaks `source_limits` (its size unpacked,
    its largest file, its number of files: read from git's object headers) is refused here,
    before any build. Raises GitProtocolError on a malformed request."""
    push = await protocol.read_commands(stream)
    if not push.sends_pack:
        return push
    if not push.deployable:
        await stream.drain(stream.received + limit)  # nothing to keep: the client hears why
        return push
    try:
        quarantine = await objects.receive_pack(repo, stream, limit)
    except PackTooLarge as e:
        push.too_large = True
        push.unpack = "push too large"
        push.messages.append(str(e))
        push.refuse_all("push too large")
        return push
    except PackRejected as e:
        push.unpack = _one_line(str(e))
        push.messages.append(f"push rejected: {push.unpack}")
        push.refuse_all("unpacker error")
        return push
    try:
        missing = await quarantine.missing([u.new for u in push.deployable])
        for command in push.commands:
            if command.reason is None and command.update.new in missing:
                command.reason = f"missing objects for {command.update.new}"
        if source_limits is not None:
            await _check_trees(quarantine, push, source_limits)
        if push.deployable:
            quarantine.migrate()
    finally:
        quarantine.discard()
    return push


async def _check_trees(quarantine: objects.Quarantine, push: PreparedPush,
                       limits: SourceLimits) -> None:
    for command in push.commands:
        if command.reason is not None:
            continue
        try:
            await asyncio.to_thread(sourcetree.check, quarantine.env(), command.update.new,
                                    limits)
        except SourceTooLarge as e:
            command.reason = str(e)
            push.messages.append(f"push rejected: {e}")


def start_deploys(backend: GitBackend, app: str, repo: Path, push: PreparedPush,
                  pusher: str = "") -> Events:
    """Starts the deploy of every accepted command; returns the queue of what it says."""
    events: Events = asyncio.Queue()
    updates = [dataclasses.replace(update, pusher=pusher) for update in push.deployable]
    task = asyncio.create_task(_deploy_all(backend, app, repo, updates, events))
    _running_deploys.add(task)
    task.add_done_callback(_running_deploys.discard)
    return events


async def _deploy_all(backend: GitBackend, app: str, repo: Path, updates: list[RefUpdate],
                      events: Events) -> None:
    results: dict[str, str | None] = {}
    for update in updates:
        results[update.ref] = await _deploy(backend, app, repo, update, events)
    events.put_nowait(("done", results))
    # After the pusher has its answer; under the app's lock, so no build of the app reads
    # its objects while packs are replaced.
    async with _app_locks.setdefault(app, asyncio.Lock()):
        if repo.is_dir() and not await objects.gc_auto(repo):
            log.warning("git gc --auto failed in %s", repo)


async def _deploy(backend: GitBackend, app: str, repo: Path, update: RefUpdate,
                  events: Events) -> str | None:
    lock = _app_locks.setdefault(app, asyncio.Lock())
    if lock.locked():
        events.put_nowait(("line", f"-----> Waiting for the push in progress to {app} "
                                   "to finish first"))
    async with lock:
        try:
            update = await in_order(repo, update)
            async for text in backend.deploy(app, update):
                for line in text.splitlines() or [""]:
                    events.put_nowait(("line", line))
        except PushRejected as e:
            return str(e) or "rejected"
        except Exception:
            log.exception("deploy of %s %s failed", app, update)
            return "deploy failed: internal error"
    return None


async def in_order(repo: Path, update: RefUpdate) -> RefUpdate:
    """The update to apply now that it is this push's turn (see the module's docstring)."""
    now = await objects.current(repo, update.ref) or ZERO_SHA
    if now == update.old:
        return update
    fast_forward = now != ZERO_SHA and await objects.is_ancestor(repo, now, update.new)
    forced = update.old != ZERO_SHA and not await objects.is_ancestor(
        repo, update.old, update.new)
    if fast_forward or forced:
        return RefUpdate(update.ref, now, update.new)
    raise PushRejected(FETCH_FIRST)


async def result(push: PreparedPush, events: Events | None) -> AsyncIterator[bytes]:
    """What the client receives: messages, deploy progress, keepalives, then the report."""
    for message in push.messages:
        yield protocol.progress(push, message)
    results: dict[str, str | None] = {}
    if events is not None:
        async with aclosing(_with_keepalive(events)) as items:
            async for kind, value in items:
                if kind == "line":
                    yield protocol.progress(push, value)
                elif kind == "keepalive" and b"side-band-64k" in push.capabilities:
                    yield KEEPALIVE
                elif kind == "done":
                    results = value
                    break
    yield protocol.report_status(push, results)


async def _with_keepalive(events: Events) -> AsyncGenerator[tuple[str, Any], None]:
    """The queue's items, with ("keepalive", None) after each quiet spell."""
    getter: asyncio.Task[tuple[str, Any]] | None = None
    try:
        while True:
            getter = getter or asyncio.ensure_future(events.get())
            done, _ = await asyncio.wait({getter}, timeout=KEEPALIVE_SECONDS)
            if not done:
                yield ("keepalive", None)
                continue
            item, getter = getter.result(), None
            yield item
    finally:
        if getter is not None:
            getter.cancel()


def _one_line(text: str) -> str:
    return " ".join(text.split())[:300] or "rejected"

