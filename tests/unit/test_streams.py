"""paas/streams.py against a real redis-server: every entry survives the trip through a stream's
fields, each stream's readers give typed entries (exit codes as int | None), and the
followers wait, resume after an id and survive a Redis that is not there."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import redis.asyncio as aredis
from redis.backoff import NoBackoff
from redis.retry import Retry

from paas import streams
from paas.streams import (
    Attached,
    BuildEnd,
    Hangup,
    Keys,
    LogLine,
    OutputLine,
    RunEnd,
    TerminalOutput,
    WindowSize,
)
from tests.redis_server import redis_server


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    with redis_server(tmp_path) as (_, found):
        yield found


@pytest.fixture
def client(url: str) -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(url, decode_responses=True)
    yield connection
    connection.close()


def entries(client: redis.Redis, stream: streams.Stream[streams.E]) -> list[streams.E]:
    return [entry for _, entry in streams.history(client, stream)]


def test_a_build_stream_holds_lines_then_its_end_and_expires(client: redis.Redis) -> None:
    streams.write_build_line(client, "b1", "-----> Building")
    streams.write_build_line(client, "b1", "")
    streams.end_build(client, "b1", False, "build failed: no buildpack")
    stream = streams.build_stream("b1")
    assert entries(client, stream) == [OutputLine("-----> Building"), OutputLine(""),
                                       BuildEnd(ok=False, message="build failed: no buildpack")]
    assert 0 < client.ttl(stream.key) <= streams.BUILD_TTL
    streams.end_build(client, "b2", True, "Released v1")
    assert entries(client, streams.build_stream("b2")) == [BuildEnd(True, "Released v1")]


def test_an_app_log_keeps_sources_and_its_bound(client: redis.Redis) -> None:
    for n in range(300):
        streams.write_log_line(client, "app", "app[web.1]", f"line {n}", lines=100)
    streams.write_log_line(client, "app", "router", "at=info", lines=100)
    log = streams.app_log("app")
    kept = entries(client, log)
    assert kept[-1] == LogLine("router", "at=info") and kept[-2] == LogLine("app[web.1]",
                                                                            "line 299")
    assert 100 <= len(kept) < 300  # trimmed approximately
    newest = streams.newest(client, log, 2)
    assert [entry for _, entry in newest] == [LogLine("router", "at=info"),
                                             LogLine("app[web.1]", "line 299")]
    assert streams.last_id(client, log) == newest[0][0]
    assert streams.last_id(client, streams.app_log("none")) == "0-0"


@pytest.mark.parametrize("code", [0, 3, 137, -1, None])
def test_a_run_stream_ends_with_its_exit_code_and_both_streams_expire(
        client: redis.Redis, code: int | None) -> None:
    streams.write_run_line(client, "app", "run.1", "hello")
    streams.add(client, streams.run_stream("app", "run.1"), TerminalOutput(b"\x00\xff\r\n"))
    streams.send_input(client, "app", "run.1", Keys(b"exit 3\r"))
    streams.end_run(client, "app", "run.1", code)
    run = streams.run_stream("app", "run.1")
    assert entries(client, run) == [OutputLine("hello"), TerminalOutput(b"\x00\xff\r\n"),
                                    RunEnd(code)]
    assert 0 < client.ttl(run.key) <= streams.RUN_TTL
    assert 0 < client.ttl(streams.input_stream("app", "run.1").key) <= streams.RUN_TTL


def test_run_ends_written_before_this_module_are_read_the_same(client: redis.Redis) -> None:
    run = streams.run_stream("app", "run.2")
    for legacy in ("3", "0", "None"):
        client.xadd(run.key, {"end": legacy})
    assert entries(client, run) == [RunEnd(3), RunEnd(0), RunEnd(None)]


def test_input_entries_round_trip(client: redis.Redis) -> None:
    sent = [Attached(), Keys(bytes(range(256))), WindowSize(33, 101), Keys(b""), Hangup()]
    for entry in sent:
        streams.send_input(client, "app", "run.1", entry)
    assert entries(client, streams.input_stream("app", "run.1")) == sent
    assert client.ttl(streams.input_stream("app", "run.1").key) > 0


def decoded(stream: streams.Stream[streams.E], sent: list[streams.E]) -> list[streams.E | None]:
    return [stream.decode(streams.encode(entry)) for entry in sent]


def test_encode_and_decode_are_inverse_for_every_entry() -> None:
    build = [OutputLine("é x"), BuildEnd(True), BuildEnd(False, "m")]
    assert decoded(streams.build_stream("b"), build) == build
    log = [LogLine("paas[api]", "Starting process")]
    assert decoded(streams.app_log("a"), log) == log
    run = [OutputLine("x"), TerminalOutput(b"\x1b[0m"), RunEnd(0), RunEnd(None)]
    assert decoded(streams.run_stream("a", "run.1"), run) == run
    keys = [Keys(b"\x03"), WindowSize(1, 2), Attached(), Hangup()]
    assert decoded(streams.input_stream("a", "run.1"), keys) == keys


def test_an_unknown_entry_is_skipped_but_moves_the_cursor(client: redis.Redis) -> None:
    keys = streams.input_stream("app", "run.3")
    unknown = client.xadd(keys.key, {"something": "new"})
    batch = streams.read(client, keys, "0", count=10)
    assert batch.entries == [] and batch.last == unknown
    assert streams.read(client, keys, unknown, count=10, block_ms=50).last is None


def test_the_sync_follower_waits_and_resumes_after_an_id(client: redis.Redis) -> None:
    keys = streams.input_stream("app", "run.4")
    streams.send_input(client, "app", "run.4", Keys(b"a"))
    follower = streams.follow_sync(client, keys, block_ms=50)
    first = next(follower)
    assert first is not None and first[1] == Keys(b"a")
    assert next(follower) is None  # quiet
    streams.send_input(client, "app", "run.4", Hangup())
    assert next(item for item in follower if item is not None)[1] == Hangup()
    after_first = streams.follow_sync(client, keys, first[0], block_ms=50)
    assert next(after_first) == (streams.last_id(client, keys), Hangup())


def test_the_sync_follower_yields_none_while_redis_is_away(tmp_path: Path) -> None:
    gone = redis.Redis(unix_socket_path=str(tmp_path / "nothing.sock"), decode_responses=True,
                       retry=Retry(NoBackoff(), 0))
    follower = streams.follow_sync(gone, streams.input_stream("a", "run.1"), block_ms=10)
    assert [next(follower), next(follower)] == [None, None]


def test_the_async_follower_gives_entries_in_order_then_none_when_quiet(url: str,
                                                                      client: redis.Redis
                                                                      ) -> None:
    streams.write_build_line(client, "b3", "one")
    streams.end_build(client, "b3", True, "Released v2")

    async def read() -> list[streams.BuildEntry | None]:
        reader = aredis.Redis.from_url(url, decode_responses=True)
        seen: list[streams.BuildEntry | None] = []
        try:
            async for item in streams.follow(reader, streams.build_stream("b3"), block_ms=50):
                seen.append(item[1] if item else None)
                if item is None:
                    return seen
        finally:
            await reader.aclose()
        return seen

    assert asyncio.run(read()) == [OutputLine("one"), BuildEnd(True, "Released v2"), None]


def test_the_async_follower_starts_after_a_given_id(url: str, client: redis.Redis) -> None:
    log = streams.app_log("app2")
    streams.write_log_line(client, "app2", "router", "old")
    after = streams.last_id(client, log)
    streams.write_log_line(client, "app2", "router", "new")

    async def first() -> tuple[str, LogLine] | None:
        reader = aredis.Redis.from_url(url, decode_responses=True)
        try:
            async for item in streams.follow(reader, log, after, block_ms=50):
                return item
        finally:
            await reader.aclose()
        return None

    item = asyncio.run(first())
    assert item is not None and item[1] == LogLine("router", "new")


def test_writers_work_through_a_pipeline_and_an_undecoded_client(url: str,
                                                                client: redis.Redis) -> None:
    raw = redis.Redis.from_url(url)  # the router's client: bytes replies
    pipe = raw.pipeline(transaction=False)
    streams.write_log_line(pipe, "app3", "router", "at=info status=200")
    streams.write_log_line(pipe, "app3", "router", "at=info status=404")
    pipe.execute()
    raw.close()
    assert [e.text for e in entries(client, streams.app_log("app3"))] == [
        "at=info status=200", "at=info status=404"]


def test_a_route_change_reads_back_as_written() -> None:
    change = streams.RouteChange(7, ("api", "web-app"))
    assert streams.route_changes().decode(streams.encode(change)) == change
    assert streams.decode_route_change({"apps": "x"}) is None  # no generation: not one
