"""The monitor of an attached one-off dyno without a terminal (`echo hi | paas run -- cat`).

It does what a dyno's monitor (paas/runtime/native/dyno-monitor.c) does, in Python
(paas/runtime/monitor.py): runs `runc run` in the foreground, its output through a pipe to the
dyno's log (bounded), its exit status to the exit-code file. The container's
stdin is a pipe fed from the one-off's input stream (paas/streams.py: `Keys` entries from the
client, then a `Hangup` for the end of its input), so the API and the dyno need
not share a host. A client that never sends anything gets an end of input after
ATTACH_TIMEOUT, so a command reading stdin does not wait for it forever.

Usage (by Runtime): python -m paas.runtime.piped DYNO_DIR RUNC ROOT INPUT_STREAM
UNSHIPPED_MAX_BYTES, with the Redis URL in $PAAS_CONSOLE_REDIS.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

import redis

from paas import redis_clients, streams
from paas.runtime import monitor

ATTACH_TIMEOUT = 120.0
INPUT_BLOCK_MS = 1000


def feed(client: redis.Redis, stream: str, process: subprocess.Popen[bytes]) -> None:
    """The input stream to the container's stdin, until its end or the container's."""
    assert process.stdin is not None
    heard = False
    deadline = time.monotonic() + ATTACH_TIMEOUT
    try:
        for item in streams.follow_sync(client, streams.input_stream_at(stream),
                                        block_ms=INPUT_BLOCK_MS):
            if process.poll() is not None:
                return
            if item is None:
                if not heard and time.monotonic() > deadline:
                    return
                continue
            heard, message = True, item[1]
            if isinstance(message, streams.Hangup):
                return
            if isinstance(message, streams.Keys) and message.data:
                _write(process.stdin, message.data)
    except BrokenPipeError:  # the command closed its stdin or ended
        return
    finally:
        _close(process.stdin)


def _write(pipe: IO[bytes], data: bytes) -> None:
    pipe.write(data)
    pipe.flush()


def _close(pipe: IO[bytes]) -> None:
    with contextlib.suppress(BrokenPipeError):
        pipe.close()


def run(dyno_dir: Path, runc: list[str], stream: str, unshipped_max: int) -> None:
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    client = redis_clients.client(os.environ["PAAS_CONSOLE_REDIS"], block=INPUT_BLOCK_MS / 1000,
                                  decode_responses=True)
    process, output, writer = monitor.start_logged(dyno_dir, runc, unshipped_max,
                                                   subprocess.PIPE)
    threading.Thread(target=feed, args=(client, stream, process), daemon=True).start()
    monitor.finish(process, output, writer, dyno_dir)
    os._exit(0)  # the feeding thread may be waiting on Redis: nothing left for it to do


if __name__ == "__main__":
    run(Path(sys.argv[1]), [sys.argv[2], "--root", sys.argv[3]], sys.argv[4], int(sys.argv[5]))
