"""Log streams in Redis: a build's output (`build:<id>`, followed by the pusher) and each
app's log (`logs:<app>`, bounded like Heroku's 1,500 lines)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import redis
import redis.asyncio as aredis

ROUTES_CHANNEL = "paas:routes"
ROUTES_GENERATION = "paas:routes:generation"
ROUTES_APPLIED = "paas:routes:applied"
BUILD_STREAM_TTL = 24 * 3600


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
        self.client.xadd(build_key(build_id), {"line": line}, maxlen=20000, approximate=True)

    def deploy_end(self, build_id: str, ok: bool, message: str) -> None:
        key = build_key(build_id)
        self.client.xadd(key, {"end": "ok" if ok else "failed", "message": message})
        self.client.expire(key, BUILD_STREAM_TTL)

    def routes_changed(self) -> None:
        generation = self.client.incr(ROUTES_GENERATION)
        self.client.publish(ROUTES_CHANNEL, str(generation))

    def routes_generation(self) -> int:
        return int(self.client.get(ROUTES_GENERATION) or 0)

    def routes_applied(self) -> int:
        return int(self.client.get(ROUTES_APPLIED) or 0)

    def app_log(self, app: str, source: str, line: str) -> None:
        self.client.xadd(app_key(app), {"source": source, "line": line},
                         maxlen=self.log_lines, approximate=True)


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


async def follow(client: aredis.Redis, key: str, block_ms: int = 1000,
                 after: str = "0") -> AsyncIterator[StreamEntry | None]:
    """Entries of a stream as they arrive; None each time `block_ms` passed without one."""
    last = after
    while True:
        batch = await client.xread({key: last}, block=block_ms, count=200)
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
