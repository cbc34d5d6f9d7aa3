"""The Redis clients of the platform's long-running processes, with explicit timeouts.

redis-py's defaults differ across the versions pyproject allows: 5.x has no socket timeout (a
Redis that accepts but never answers hangs the caller for good), newer ones wait 5 s, which
cuts short an `XREAD BLOCK` longer than that. So each client says what it needs: a command's
answer within COMMAND_TIMEOUT, a blocking read's within its block time plus COMMAND_TIMEOUT.
A PING precedes a command on a connection idle for HEALTH_CHECK_INTERVAL (the router's log
shipper and route listener may idle for hours), so a dead connection is replaced before use.
Redis is restarted by `paas up`; callers already treat `redis.RedisError` (a timeout is one)
as "try again"."""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio as aredis

COMMAND_TIMEOUT = 10.0
CONNECT_TIMEOUT = 5.0
HEALTH_CHECK_INTERVAL = 30


def _options(block: float, decode_responses: bool) -> dict[str, Any]:
    return {"socket_timeout": COMMAND_TIMEOUT + block, "socket_connect_timeout": CONNECT_TIMEOUT,
            "health_check_interval": HEALTH_CHECK_INTERVAL, "decode_responses": decode_responses}


def client(url: str, *, block: float = 0.0, decode_responses: bool = False) -> redis.Redis:
    """`block`: the longest blocking read (XREAD BLOCK) made with it, in seconds."""
    return redis.Redis.from_url(url, **_options(block, decode_responses))


def async_client(url: str, *, block: float = 0.0,
                 decode_responses: bool = False) -> aredis.Redis:
    return aredis.Redis.from_url(url, **_options(block, decode_responses))
