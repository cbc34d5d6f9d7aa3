"""The platform's notifications over Redis, end to end: the only code that spells their keys and
channels. Each is a wake-up, never the data itself: whoever is woken reads the API (or a key)
for what is true now, so a lost message costs only the fallback interval.

- Routes: the API increments `paas:routes:generation` after every change that may change the
  route table and publishes the new generation on `paas:routes`; the router fetches the table
  at once, applies it, then sets `paas:routes:applied` to the generation it applied and, when
  that is a new one, publishes it on `paas:routes-applied` (and logs the apps whose routes it
  changed in the `routes:changes` stream, `paas/streams.py`). The git receiver waits for the
  acknowledgement before it says "deployed"; an agent stops a retiring dyno only once the router
  has applied a generation without it.
- Desired state: the API publishes on `paas:desired` after each change to what a node should
  run (a release, a scale, a restart, a promotion); the agents wake on it and on
  `paas:routes-applied` instead of waiting for their interval (PAAS_AGENT_INTERVAL, kept as
  the fallback).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import redis

from paas import redis_clients, streams

if TYPE_CHECKING:
    Client = redis.Redis[Any]

ROUTES_CHANNEL = "paas:routes"
ROUTES_GENERATION = "paas:routes:generation"
ROUTES_APPLIED = "paas:routes:applied"
APPLIED_CHANNEL = "paas:routes-applied"
DESIRED_CHANNEL = "paas:desired"


def routes_changed(client: Client) -> int:
    generation = int(client.incr(ROUTES_GENERATION))
    client.publish(ROUTES_CHANNEL, str(generation))
    return generation


def routes_generation(client: Client) -> int:
    return int(client.get(ROUTES_GENERATION) or 0)


def routes_applied(client: Client) -> int:
    return int(client.get(ROUTES_APPLIED) or 0)


def acknowledge(client: Client, generation: int, changed_apps: tuple[str, ...] = (),
                new: bool = True) -> None:
    """The router serves `generation` now; `new`: a generation it had not acknowledged."""
    pipe = client.pipeline(transaction=False)
    pipe.set(ROUTES_APPLIED, generation)
    if changed_apps:
        streams.add(pipe, streams.route_changes(), streams.RouteChange(generation, changed_apps))
    if new:
        pipe.publish(APPLIED_CHANNEL, str(generation))
    pipe.execute()


def desired_changed(client: Client) -> None:
    client.publish(DESIRED_CHANNEL, "")


def listen(url: str, channels: tuple[str, ...], wake: threading.Event, stop: threading.Event,
           on_error: Callable[[BaseException], None] | None = None,
           on_ok: Callable[[], None] | None = None) -> None:
    """Sets `wake` on every message on `channels`, and each time it (re)subscribes (whatever
    was published while it was away); reconnects until `stop` is set."""
    while not stop.is_set():
        # get_message waits for messages itself: the socket timeout bounds commands only.
        client = redis_clients.client(url)
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.subscribe(*channels)
            if on_ok is not None:
                on_ok()
            wake.set()
            while not stop.is_set():
                if pubsub.get_message(timeout=1.0) is not None:
                    wake.set()
        except (redis.RedisError, OSError) as error:
            if on_error is not None:
                on_error(error)
            stop.wait(1.0)
        finally:
            pubsub.close()
            client.close()
