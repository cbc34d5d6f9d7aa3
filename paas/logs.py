"""Log streams in Redis: a build's output (`build:<id>`, followed by the pusher) and each
app's log (`logs:<app>`, bounded like Heroku's 1,500 lines)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import redis
import redis.asyncio as aredis

from paas.redact import redact
from paas.runtime import outputlines

ROUTES_CHANNEL = "paas:routes"
ROUTES_GENERATION = "paas:routes:generation"
ROUTES_APPLIED = "paas:routes:applied"
BUILD_STREAM_TTL = 24 * 3600
MAX_WAIT = 30.0  # seconds: the longest long poll of `after` (`paas logs --tail`)
FOLLOW_BLOCK_MS = 1000  # the XREAD BLOCK of `follow` and the dashboard's live streams
MAX_LINE_BYTES = outputlines.LINE_LIMIT  # the longest line a stream keeps: 20000 lines, ~200 MB


def build_key(build_id: str) -> str:
    return f"build:{build_id}"


def app_key(app: str) -> str:
    return f"logs:{app}"


class RedisEvents:
    """paas.events.Events over Redis."""

    def __init__(self, client: redis.Redis, log_lines: int = 1500) -> None:
        self.client = client
        self.log_lines = log_lines

    def deploy_line(self, build_id: str, line: str) -> None:
        self.client.xadd(build_key(build_id), {"line": capped(line)}, maxlen=20000,
                         approximate=True)

    def deploy_end(self, build_id: str, ok: bool, message: str) -> None:
        key = build_key(build_id)
        self.client.xadd(key, {"end": "ok" if ok else "failed",
                                "message": capped(message)})
        self.client.expire(key, BUILD_STREAM_TTL)

    def routes_changed(self) -> None:
        generation = self.client.incr(ROUTES_GENERATION)
        self.client.publish(ROUTES_CHANNEL, str(generation))

    def routes_generation(self) -> int:
        return int(self.client.get(ROUTES_GENERATION) or 0)

    def routes_applied(self) -> int:
        return int(self.client.get(ROUTES_APPLIED) or 0)

    def app_log(self, app: str, source: str, line: str) -> None:
        self.client.xadd(app_key(app), {"source": source, "line": capped(line)},
                         maxlen=self.log_lines, approximate=True)


def capped(line: str) -> str:
    """`line` redacted, then cut to MAX_LINE_BYTES of UTF-8 and marked as cut when longer
    (redacting first: a credential the cut would split is already gone)."""
    return outputlines.cut(redact(line), limit=MAX_LINE_BYTES)


@dataclass
class BufferedEvents:
    """Holds events until the transaction that caused them has committed."""

    calls: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)

    def deploy_line(self, build_id: str, line: str) -> None:
        self.calls.append(("deploy_line", (build_id, line)))

    def deploy_end(self, build_id: str, ok: bool, message: str) -> None:
        self.calls.append(("deploy_end", (build_id, ok, message)))

    def routes_changed(self) -> None:
        self.calls.append(("routes_changed", ()))

    def app_log(self, app: str, source: str, line: str) -> None:
        self.calls.append(("app_log", (app, source, line)))

    def flush_to(self, target: RedisEvents) -> None:
        for name, args in self.calls:
            getattr(target, name)(*args)
        self.calls.clear()


@dataclass(frozen=True)
class StreamEntry:
    line: str | None = None
    end: str | None = None
    message: str = ""


async def follow(client: aredis.Redis, key: str, block_ms: int = FOLLOW_BLOCK_MS,
                 after: str = "0") -> AsyncIterator[StreamEntry | None]:
    """Entries of a stream as they arrive; None each time `block_ms` passed without one."""
    last = after
    while True:
        try:
            batch = await client.xread({key: last}, block=block_ms, count=200)
        except redis.RedisError:  # Redis restarting: the caller asks the database meanwhile
            await asyncio.sleep(block_ms / 1000)
            batch = None
        if not batch:
            yield None
            continue
        for entry_id, fields in batch[0][1]:
            last = entry_id
            yield StreamEntry(line=fields.get("line"), end=fields.get("end"),
                              message=fields.get("message", ""))


def recent(client: redis.Redis, app: str, count: int) -> list[dict[str, str]]:
    entries = client.xrevrange(app_key(app), count=count)
    return [fields for _, fields in reversed(entries)]


def run_stream(app: str, name: str) -> str:
    """The stream an attached one-off's output goes to (not the app's log)."""
    return f"run:{app}:{name}"


@dataclass(frozen=True)
class LogFilter:
    """`paas logs --ps web.1 --source app`: a dyno name (or a process type), a source."""

    dyno: str | None = None
    source: str | None = None

    def matches(self, fields: dict[str, str]) -> bool:
        source = fields.get("source", "")
        kind, _, rest = source.partition("[")
        dyno = rest.rstrip("]")
        if self.source and kind != self.source:
            return False
        return not self.dyno or dyno == self.dyno or dyno.split(".")[0] == self.dyno


def _entry(entry_id: str, fields: dict[str, str]) -> dict[str, str]:
    millis = int(entry_id.split("-")[0])
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(millis / 1000))
    return {**fields, "id": entry_id, "time": f"{stamp}.{millis % 1000:03d}+00:00"}


def recent_filtered(client: redis.Redis, app: str, count: int, wanted: LogFilter,
                    window: int | None = None) -> list[dict[str, str]]:
    """The last `count` lines that match among the newest `window` (the log's bound: the
    stream is trimmed approximately, so it may still hold a few older ones), oldest first."""
    found: list[dict[str, str]] = []
    for entry_id, fields in client.xrevrange(app_key(app), count=window):
        if wanted.matches(fields):
            found.append(_entry(entry_id, fields))
            if len(found) >= count:
                break
    return list(reversed(found))


def after(client: redis.Redis, app: str, last: str, wanted: LogFilter,
          wait: float) -> list[dict[str, str]]:
    """Lines after stream id `last` ("$" for only new ones), waiting up to `wait` seconds for
    the first: what `paas logs --tail` polls."""
    if last == "$":
        newest = client.xrevrange(app_key(app), count=1)
        last = newest[0][0] if newest else "0-0"
    batch = client.xread({app_key(app): last}, count=500, block=int(wait * 1000) or None)
    entries = batch[0][1] if batch else []
    matched = [_entry(i, f) for i, f in entries if wanted.matches(f)]
    if entries and not matched:  # nothing for this filter: still move the cursor on
        matched = [{"id": entries[-1][0], "skip": "1"}]
    return matched
