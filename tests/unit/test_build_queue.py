"""The API queues a build without Celery's client (paas/build_queue.py), against a real
redis-server: the message it puts there is the one Celery's own `send_task` puts there, and
a consumer on Celery's transport (kombu, as the worker reads) takes it as the build task."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from kombu import Queue

from paas import build_queue
from paas.builder.celery_app import make_celery
from paas.settings import Settings
from tests.redis_server import redis_server

VARYING = {("headers", "id"), ("headers", "root_id"), ("headers", "origin"),
           ("properties", "correlation_id"),
           ("properties", "reply_to"), ("properties", "delivery_tag")}


@pytest.fixture
def settings(tmp_path: Path) -> Iterator[Settings]:
    with redis_server(tmp_path) as (_, found):
        yield Settings(home=tmp_path / "home", redis_url_override=found)


def queued(client: redis.Redis) -> list[dict[str, Any]]:
    return [json.loads(raw) for raw in client.lrange(build_queue.QUEUE, 0, -1)]


def test_the_message_is_the_one_celery_sends(settings: Settings) -> None:
    client = redis.Redis.from_url(settings.redis_url)
    make_celery(settings).send_task(build_queue.TASK, args=["b-1"])
    [theirs] = queued(client)
    client.delete(build_queue.QUEUE)
    build_queue.enqueue_build(client, "b-1")
    [ours] = queued(client)
    assert ours.keys() == theirs.keys()
    for part in ("headers", "properties"):
        assert ours[part].keys() == theirs[part].keys(), part
        for key in ours[part]:
            if (part, key) not in VARYING:
                assert ours[part][key] == theirs[part][key], (part, key)
    assert base64.b64decode(ours["body"]) == base64.b64decode(theirs["body"])
    assert ours["headers"]["id"] == ours["headers"]["root_id"] == \
        ours["properties"]["correlation_id"]


def test_a_consumer_on_celerys_transport_takes_it_as_the_build_task(settings: Settings) -> None:
    build_queue.enqueue_build(redis.Redis.from_url(settings.redis_url), "b-2")
    got: list[tuple[str, Any]] = []

    def take(body: Any, message: Any) -> None:
        got.append((message.headers["task"], body))
        message.ack()

    with make_celery(settings).connection_for_read() as connection, connection.Consumer(
            Queue(build_queue.QUEUE), accept=["json"], callbacks=[take]):
        connection.drain_events(timeout=10)
    assert got == [("paas.build.tasks.build", [["b-2"], {}, {
        "callbacks": None, "errbacks": None, "chain": None, "chord": None}])]
