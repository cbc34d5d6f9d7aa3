"""A real redis-server of a test's own, on a unix socket in its directory, no persistence."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis


@contextmanager
def redis_server(directory: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """Yields the server's process and its URL once it answers PING."""
    sock = directory / "redis.sock"
    process = subprocess.Popen(
        ["redis-server", "--port", "0", "--unixsocket", str(sock), "--save", "",
         "--appendonly", "no", "--dir", str(directory)], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not _answers(sock):  # the socket exists a moment before Redis listens on it
            assert time.monotonic() < deadline, "redis did not start"
            time.sleep(0.02)
        yield process, f"unix://{sock}"
    finally:
        process.send_signal(signal.SIGCONT)  # a test may have stopped it
        process.terminate()
        process.wait(10)


def _answers(sock: Path) -> bool:
    try:
        with redis.Redis(unix_socket_path=str(sock)) as probe:
            return bool(probe.ping())
    except redis.ConnectionError:
        return False
