"""Redis full to its maxmemory (0.75 of PAAS_REDIS_MEMORY_MB, noeviction) refuses writes
instead of being OOM-killed in its cgroup: its pid stays, the API keeps answering, and once
space is freed writes work again."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from paas.settings import Settings
from tests.platform import Platform
from tests.services import service_pids

pytestmark = pytest.mark.e2e

REDIS_MB = 96


@pytest.fixture(scope="module")
def small_redis() -> Iterator[Platform]:
    platform = Platform.create(PAAS_REDIS_MEMORY_MB=str(REDIS_MB))
    try:
        platform.up()
        yield platform
    finally:
        platform.down()


def fill(client: redis.Redis) -> int:
    """Writes 1 MB values until Redis refuses one; returns how many it took."""
    piece = b"x" * (1 << 20)
    for i in range(4 * REDIS_MB):
        try:
            client.set(f"test-filler:{i}", piece)
        except redis.exceptions.OutOfMemoryError:
            return i
    raise AssertionError(f"Redis took {4 * REDIS_MB} MB with a {REDIS_MB} MB limit")


def test_a_full_redis_refuses_writes_and_stays_up(small_redis: Platform) -> None:
    pid = service_pids(small_redis)["redis"]
    client = redis.Redis(unix_socket_path=str(Settings(home=small_redis.home).redis_socket))
    try:
        taken = fill(client)
        assert taken <= REDIS_MB * 0.75
        with small_redis.api() as api:
            assert api.get("/v1/apps").status_code == 200
            assert api.get("/healthz").status_code == 200
            # a write that reaches Redis (the app's events) is an answer, not a crash
            created = api.post("/v1/apps", json={"name": "while-full"})
            assert created.status_code in (201, 503), created.text
            assert api.get("/v1/apps").status_code == 200
        assert service_pids(small_redis)["redis"] == pid
    finally:
        for key in client.scan_iter("test-filler:*"):
            client.delete(key)
    client.set("test-after", b"ok")
    assert client.get("test-after") == b"ok"
    client.delete("test-after")
    client.close()
