"""The platform's Redis streams, end to end: their keys and bounds, the entries they hold (typed),
how each entry is spelled in a stream's fields (here only), and the writers and readers every
process uses.

- `build:<id>`: a build's output and its release phase, then its end (ok or failed, and the
  message the pusher sees); followed by `git push` and the dashboard.
- `logs:<app>`: the app's log, lines with their source (`app[web.1]`, `router`, `paas[api]`).
- `run:<app>:<dyno>`: an attached one-off's output (lines, or a terminal's bytes), then its end
  with the exit code; relayed by the API's attach routes.
- `run-input:<app>:<dyno>`: what its user sends it: keys, window sizes, that a terminal client
  attached, and the hangup (the end of its input).
- `routes:changes`: each route table the router applied that changed some app's route: its
  generation and those apps (when a deploy was routed: `bench/stages.py`, `paas/notify.py`).

Readers expect clients made with decode_responses=True; writers work with any client.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

import redis

if TYPE_CHECKING:
    import redis.asyncio as aredis

    # Readers decode str replies (decode_responses=True); writers take any client.
    Writer = redis.Redis[Any]
    Reader = redis.Redis[str]
    AsyncClient = aredis.Redis[str]

FOLLOW_BLOCK_MS = 1000  # the XREAD BLOCK of the followers
BUILD_MAXLEN = 20000  # entries: with lines of at most 10 KB, ~200 MB
BUILD_TTL = 24 * 3600  # seconds a build's stream is kept after its end
LOG_LINES = 1500  # the app log's default bound (PAAS_LOG_LINES)
RUN_MAXLEN = 20000
RUN_TTL = 3600  # seconds a one-off's streams outlive it
INPUT_MAXLEN = 10000
INPUT_TTL = 3600  # seconds the input stream outlives its last input
ROUTE_CHANGES_MAXLEN = 1000

# ---- entries -----------------------------------------------------------------------------


@dataclass(frozen=True)
class OutputLine:
    """A line of a build's or an attached one-off's output."""

    text: str


@dataclass(frozen=True)
class LogLine:
    """A line of an app's log and who said it (`app[web.1]`, `router`, `paas[api]`)."""

    source: str
    text: str


@dataclass(frozen=True)
class TerminalOutput:
    """Bytes a one-off's terminal printed (never cut: split into entries)."""

    data: bytes


@dataclass(frozen=True)
class BuildEnd:
    ok: bool
    message: str = ""


@dataclass(frozen=True)
class RunEnd:
    exit_code: int | None  # None: the one-off's end could not be observed


@dataclass(frozen=True)
class Keys:
    """Bytes for a one-off's stdin or terminal."""

    data: bytes


@dataclass(frozen=True)
class WindowSize:
    rows: int
    cols: int


@dataclass(frozen=True)
class Attached:
    """A terminal client attached (so the console does not hang up on nobody)."""


@dataclass(frozen=True)
class Hangup:
    """The user went away, or the end of a one-off's stdin."""


@dataclass(frozen=True)
class RouteChange:
    """A route table the router applied, and the apps whose routes it changed."""

    generation: int
    apps: tuple[str, ...]


BuildEntry = OutputLine | BuildEnd
RunEntry = OutputLine | TerminalOutput | RunEnd
InputEntry = Keys | WindowSize | Attached | Hangup
Entry = OutputLine | LogLine | TerminalOutput | BuildEnd | RunEnd | InputEntry | RouteChange
Fields = dict[str, str]
E = TypeVar("E", bound=Entry)

# ---- encoding ----------------------------------------------------------------------------


def encode(entry: Entry) -> Fields:
    """An entry as a stream's fields."""
    match entry:
        case OutputLine(text):
            return {"line": text}
        case LogLine(source, text):
            return {"source": source, "line": text}
        case TerminalOutput(data) | Keys(data):
            return {"data": _b64(data)}
        case BuildEnd(ok, message):
            return {"end": "ok" if ok else "failed", "message": message}
        case RunEnd(None):
            return {"end": "exited"}
        case RunEnd(code):
            return {"end": "exited", "exit_code": str(code)}
        case WindowSize(rows, cols):
            return {"size": f"{rows} {cols}"}
        case Attached():
            return {"attached": "1"}
        case Hangup():
            return {"hangup": "1"}
        case RouteChange(generation, apps):
            return {"generation": str(generation), "apps": " ".join(apps)}
    raise TypeError(f"not a stream entry: {entry!r}")


def decode_build(fields: Fields) -> BuildEntry | None:
    if "end" in fields:
        return BuildEnd(ok=fields["end"] == "ok", message=fields.get("message", ""))
    return OutputLine(fields["line"]) if "line" in fields else None


def decode_log(fields: Fields) -> LogLine:
    return LogLine(source=fields.get("source", ""), text=fields.get("line", ""))


def decode_run(fields: Fields) -> RunEntry | None:
    if "end" in fields:
        # Agents before this module wrote the code itself as the end ("3", or "None").
        code = fields.get("exit_code", fields["end"])
        return RunEnd(int(code) if code.lstrip("-").isdigit() else None)
    if "data" in fields:
        return TerminalOutput(base64.b64decode(fields["data"]))
    return OutputLine(fields["line"]) if "line" in fields else None


def decode_input(fields: Fields) -> InputEntry | None:
    if fields.get("hangup"):
        return Hangup()
    if "size" in fields:
        rows, _, cols = fields["size"].partition(" ")
        return WindowSize(int(rows), int(cols))
    if "data" in fields:
        return Keys(base64.b64decode(fields["data"]))
    return Attached() if "attached" in fields else None


def decode_route_change(fields: Fields) -> RouteChange | None:
    if not fields.get("generation", "").isdigit():
        return None
    return RouteChange(int(fields["generation"]), tuple(fields.get("apps", "").split()))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# ---- the streams -------------------------------------------------------------------------


@dataclass(frozen=True)
class Stream(Generic[E]):
    """One stream: its key, its bound (approximate), how long it is kept, what it holds."""

    key: str
    maxlen: int
    ttl: int | None
    decode: Callable[[Fields], E | None]


def build_stream(build_id: str) -> Stream[BuildEntry]:
    return Stream(f"build:{build_id}", BUILD_MAXLEN, BUILD_TTL, decode_build)


def app_log(app: str, lines: int = LOG_LINES) -> Stream[LogLine]:
    """`lines`: the log's bound (settings.log_lines); only writers need it."""
    return Stream(f"logs:{app}", lines, None, decode_log)


def run_stream(app: str, dyno: str) -> Stream[RunEntry]:
    return run_stream_at(f"run:{app}:{dyno}")


def run_stream_at(key: str) -> Stream[RunEntry]:
    """The run stream named `key` (a console monitor is given it on its command line)."""
    return Stream(key, RUN_MAXLEN, RUN_TTL, decode_run)


def input_stream(app: str, dyno: str) -> Stream[InputEntry]:
    return input_stream_at(f"run-input:{app}:{dyno}")


def input_stream_at(key: str) -> Stream[InputEntry]:
    return Stream(key, INPUT_MAXLEN, INPUT_TTL, decode_input)


def route_changes() -> Stream[RouteChange]:
    return Stream("routes:changes", ROUTE_CHANGES_MAXLEN, None, decode_route_change)


# ---- writers -----------------------------------------------------------------------------


def add(client: Writer, stream: Stream[E], entry: E) -> None:
    """Appends `entry` (a pipeline's client queues it)."""
    client.xadd(stream.key, encode(entry), maxlen=stream.maxlen, approximate=True)


async def add_async(client: AsyncClient, stream: Stream[E], entry: E) -> None:
    await client.xadd(stream.key, encode(entry), maxlen=stream.maxlen, approximate=True)


def keep_for_ttl(client: Writer, stream: Stream[E]) -> None:
    if stream.ttl is not None:
        client.expire(stream.key, stream.ttl)


def write_build_line(client: Writer, build_id: str, line: str) -> None:
    """`line` as given: RedisEvents.deploy_line redacts and cuts it first."""
    add(client, build_stream(build_id), OutputLine(line))


def end_build(client: Writer, build_id: str, ok: bool, message: str) -> None:
    stream = build_stream(build_id)
    add(client, stream, BuildEnd(ok, message))
    keep_for_ttl(client, stream)


def write_log_line(client: Writer, app: str, source: str, line: str,
                   lines: int = LOG_LINES) -> None:
    add(client, app_log(app, lines), LogLine(source, line))


def write_run_line(client: Writer, app: str, dyno: str, line: str) -> None:
    """A line of an attached one-off's output (cut to outputlines.LINE_LIMIT already)."""
    add(client, run_stream(app, dyno), OutputLine(line))


def end_run(client: Writer, app: str, dyno: str, exit_code: int | None) -> None:
    """An attached one-off ended: its end, and both its streams expire after RUN_TTL."""
    output, keys = run_stream(app, dyno), input_stream(app, dyno)
    add(client, output, RunEnd(exit_code))
    keep_for_ttl(client, output)
    client.expire(keys.key, RUN_TTL)


def send_input(client: Writer, app: str, dyno: str, entry: InputEntry) -> None:
    stream = input_stream(app, dyno)
    add(client, stream, entry)
    keep_for_ttl(client, stream)


async def send_input_async(client: AsyncClient, app: str, dyno: str,
                           entry: InputEntry) -> None:
    stream = input_stream(app, dyno)
    await add_async(client, stream, entry)
    await client.expire(stream.key, INPUT_TTL)


# ---- readers -----------------------------------------------------------------------------

RawEntries = list[tuple[str, Fields]]
XReadReply = list[tuple[str, RawEntries]]  # RESP2: [(key, entries)], [] after a quiet block


@dataclass(frozen=True)
class Batch(Generic[E]):
    """What one read returned: the entries it could decode, with their ids, and the id of the
    last entry read (decoded or not: where the next read starts); None when there was none."""

    entries: list[tuple[str, E]]
    last: str | None


def _decoded(stream: Stream[E], raw: RawEntries) -> list[tuple[str, E]]:
    entries = ((entry_id, stream.decode(fields)) for entry_id, fields in raw)
    return [(entry_id, entry) for entry_id, entry in entries if entry is not None]


def _batch(stream: Stream[E], reply: XReadReply) -> Batch[E]:
    raw = reply[0][1] if reply else []
    return Batch(_decoded(stream, raw), raw[-1][0] if raw else None)


def read(client: Reader, stream: Stream[E], after: str, *, count: int,
         block_ms: int | None = None) -> Batch[E]:
    """Entries after id `after`, waiting up to `block_ms` for the first (None: no wait)."""
    reply = client.xread({stream.key: after}, count=count, block=block_ms)
    return _batch(stream, cast(XReadReply, reply))


def history(client: Reader, stream: Stream[E]) -> list[tuple[str, E]]:
    """Every entry the stream holds, oldest first."""
    return _decoded(stream, cast(RawEntries, client.xrange(stream.key)))


def newest(client: Reader, stream: Stream[E], count: int | None) -> list[tuple[str, E]]:
    """The newest `count` entries (None: all), newest first."""
    return _decoded(stream, cast(RawEntries, client.xrevrange(stream.key, count=count)))


def last_id(client: Reader, stream: Stream[E]) -> str:
    """The id of the newest entry ("0-0" for none): reading after it reads only new ones."""
    reply = cast(RawEntries, client.xrevrange(stream.key, count=1))
    return reply[0][0] if reply else "0-0"


def follow_sync(client: Reader, stream: Stream[E], after: str = "0", *,
                block_ms: int = FOLLOW_BLOCK_MS, count: int = 100
                ) -> Iterator[tuple[str, E] | None]:
    """Entries as they arrive; None each time `block_ms` passed without one, or Redis failed
    (it is restarting: the caller decides whether to go on waiting)."""
    last = after
    while True:
        try:
            batch = read(client, stream, last, count=count, block_ms=block_ms)
        except redis.RedisError:
            time.sleep(block_ms / 1000)
            yield None
            continue
        last = batch.last or last
        if batch.last is None:
            yield None
        yield from batch.entries


async def follow(client: AsyncClient, stream: Stream[E], after: str = "0", *,
                 block_ms: int = FOLLOW_BLOCK_MS, count: int = 200
                 ) -> AsyncIterator[tuple[str, E] | None]:
    """follow_sync with an asyncio client."""
    last = after
    while True:
        try:
            reply = await client.xread({stream.key: last}, count=count, block=block_ms)
        except redis.RedisError:  # Redis restarting: the caller asks the database meanwhile
            await asyncio.sleep(block_ms / 1000)
            yield None
            continue
        batch = _batch(stream, cast(XReadReply, reply))
        last = batch.last or last
        if batch.last is None:
            yield None
        for item in batch.entries:
            yield item
