"""The domain's side of the Redis streams (paas/streams.py): RedisEvents writes a build's
output (`build:<id>`, followed by the pusher) and each app's log (`logs:<app>`, bounded like
Heroku's 1,500 lines), redacted and cut; `paas logs` reads the app's log."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

import redis

from paas import notify, outputlines, streams
from paas.redact import redact
from paas.streams import LogLine

MAX_WAIT = 30.0  # seconds: the longest long poll of `after` (`paas logs --tail`)
MAX_LINE_BYTES = outputlines.LINE_LIMIT  # the longest line a stream keeps: 20000 lines, ~200 MB


class RedisEvents:
    """paas.events.Events over Redis."""

    def __init__(self, client: redis.Redis, log_lines: int = streams.LOG_LINES) -> None:
        self.client = client
        self.log_lines = log_lines

    def deploy_line(self, build_id: str, line: str) -> None:
        streams.write_build_line(self.client, build_id, capped(line))

    def deploy_end(self, build_id: str, ok: bool, message: str) -> None:
        streams.end_build(self.client, build_id, ok, capped(message))

    def routes_changed(self) -> None:
        notify.routes_changed(self.client)

    def routes_generation(self) -> int:
        return notify.routes_generation(self.client)

    def routes_applied(self) -> int:
        return notify.routes_applied(self.client)

    def desired_changed(self) -> None:
        # A wake-up only: lost (Redis down), it costs the agents their interval, and the
        # change that caused it has committed already.
        with contextlib.suppress(redis.RedisError, OSError):
            notify.desired_changed(self.client)

    def app_log(self, app: str, source: str, line: str) -> None:
        streams.write_log_line(self.client, app, source, capped(line), self.log_lines)


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

    def desired_changed(self) -> None:
        if ("desired_changed", ()) not in self.calls:  # once per transaction is enough
            self.calls.append(("desired_changed", ()))

    def app_log(self, app: str, source: str, line: str) -> None:
        self.calls.append(("app_log", (app, source, line)))

    def flush_to(self, target: RedisEvents) -> None:
        for name, args in self.calls:
            getattr(target, name)(*args)
        self.calls.clear()


@dataclass(frozen=True)
class LogFilter:
    """`paas logs --ps web.1 --source app`: a dyno name (or a process type), a source."""

    dyno: str | None = None
    source: str | None = None

    def matches(self, line: LogLine) -> bool:
        kind, _, rest = line.source.partition("[")
        dyno = rest.rstrip("]")
        if self.source and kind != self.source:
            return False
        return not self.dyno or dyno == self.dyno or dyno.split(".")[0] == self.dyno


def _row(entry_id: str, line: LogLine) -> dict[str, str]:
    """A log line as `GET /v1/apps/{app}/logs` gives it."""
    millis = int(entry_id.split("-")[0])
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(millis / 1000))
    return {"source": line.source, "line": line.text, "id": entry_id,
            "time": f"{stamp}.{millis % 1000:03d}+00:00"}


def recent_filtered(client: redis.Redis, app: str, count: int, wanted: LogFilter,
                    window: int | None = None) -> list[dict[str, str]]:
    """The last `count` lines that match among the newest `window` (the log's bound: the
    stream is trimmed approximately, so it may still hold a few older ones), oldest first."""
    found: list[dict[str, str]] = []
    for entry_id, line in streams.newest(client, streams.app_log(app), window):
        if wanted.matches(line):
            found.append(_row(entry_id, line))
            if len(found) >= count:
                break
    return list(reversed(found))


def after(client: redis.Redis, app: str, last: str, wanted: LogFilter,
          wait: float) -> list[dict[str, str]]:
    """Lines after stream id `last` ("$" for only new ones), waiting up to `wait` seconds for
    the first: what `paas logs --tail` polls."""
    log = streams.app_log(app)
    if last == "$":
        last = streams.last_id(client, log)
    batch = streams.read(client, log, last, count=500, block_ms=int(wait * 1000) or None)
    matched = [_row(i, line) for i, line in batch.entries if wanted.matches(line)]
    if batch.last and not matched:  # nothing for this filter: still move the cursor on
        matched = [{"id": batch.last, "skip": "1"}]
    return matched
