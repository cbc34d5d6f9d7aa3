"""The platform's Redis clients against a real redis-server: a blocking read longer than
redis-py's own default timeout completes, and a Redis that stops answering raises a timeout
instead of hanging its caller."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from paas import logs, redis_clients, streams
from tests.redis_server import redis_server


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    with redis_server(tmp_path) as found:
        yield found


def test_a_log_long_poll_longer_than_redis_pys_default_timeout_returns(
        server: tuple[subprocess.Popen[bytes], str]) -> None:
    """`paas logs --tail` waits up to logs.MAX_WAIT; redis-py 8 alone cuts reads at 5 s."""
    client = redis_clients.client(server[1], block=logs.MAX_WAIT, decode_responses=True)
    wanted = logs.LogFilter(dyno=None, source=None)
    assert logs.after(client, "quiet", "$", wanted, wait=6) == []
    client.close()


def test_a_redis_that_stops_answering_times_out_and_is_used_again_after(
        server: tuple[subprocess.Popen[bytes], str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(redis_clients, "COMMAND_TIMEOUT", 0.5)
    process, url = server
    client = redis_clients.client(url, block=1.0)
    assert client.xread({"stream": "0"}, block=1000) == []  # the block is not cut short
    process.send_signal(signal.SIGSTOP)
    try:
        with pytest.raises(redis.TimeoutError):
            client.get("key")
    finally:
        process.send_signal(signal.SIGCONT)
    assert client.set("key", "back") and client.get("key") == b"back"
    client.close()


def test_the_async_client_blocks_as_long_as_asked(
        server: tuple[subprocess.Popen[bytes], str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(redis_clients, "COMMAND_TIMEOUT", 0.5)

    async def read() -> object:
        client = redis_clients.async_client(server[1], block=1.0)
        try:
            return await client.xread({"stream": "0"}, block=1000)
        finally:
            await client.aclose()

    assert asyncio.run(read()) == []


def test_a_line_longer_than_10_kb_is_cut_and_marked_in_every_stream(
        server: tuple[subprocess.Popen[bytes], str]) -> None:
    """A build or a dyno printing a 1 MB line without a newline keeps 10 KB of it in Redis."""
    client = redis.Redis.from_url(server[1], decode_responses=True)
    events = logs.RedisEvents(client)
    huge = "é" + "x" * 1024 * 1024 + " https://u:tok@h/"
    events.deploy_line("b1", huge)
    events.deploy_end("b1", False, huge)
    events.app_log("cut", "app", huge)
    events.deploy_line("b1", "short line")
    build = [entry for _, entry in streams.history(client, streams.build_stream("b1"))]
    logged = [entry for _, entry in streams.history(client, streams.app_log("cut"))]
    assert isinstance(build[0], streams.OutputLine) and isinstance(build[1], streams.BuildEnd)
    for kept in (build[0].text, build[1].message, logged[0].text):
        assert len(kept.encode()) < logs.MAX_LINE_BYTES + 100
        assert kept.startswith("éxxx")
        assert re.search(r" \[line cut: \d+ more bytes\]$", kept), kept[-80:]
    assert build[2] == streams.OutputLine("short line")  # a line within the cap is kept whole
    client.close()
