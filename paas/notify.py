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
- Routers, one by one: each acknowledgement also sets the router's field of the hash
  `paas:routers:applied` to "<generation> <unix time>" (every pass, about once a second: a
  heartbeat). The ACME orderer tells the CA to validate a challenge only once every router
  heard from in the last ROUTER_LIVE seconds applied a generation that carries it
  (`routers_applied`).
- Desired state: the API publishes on `paas:desired` after each change to what a node should
  run (a release, a scale, a restart, a promotion); the agents wake on it and on
  `paas:routes-applied` instead of waiting for their interval (PAAS_AGENT_INTERVAL, kept as
  the fallback).
"""

from __future__ import annotations

import threading
import time
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
ROUTERS_APPLIED = "paas:routers:applied"
ROUTER_LIVE = 30.0


def routes_changed(client: Client) -> int:
    generation = int(client.incr(ROUTES_GENERATION))
    client.publish(ROUTES_CHANNEL, str(generation))
    return generation


def routes_generation(client: Client) -> int:
    return int(client.get(ROUTES_GENERATION) or 0)


def routes_applied(client: Client) -> int:
    return int(client.get(ROUTES_APPLIED) or 0)


def acknowledge(client: Client, generation: int, changed_apps: tuple[str, ...] = (),
                new: bool = True, router: str = "router") -> None:
    """The router serves `generation` now; `new`: a generation it had not acknowledged."""
    pipe = client.pipeline(transaction=False)
    pipe.set(ROUTES_APPLIED, generation)
    pipe.hset(ROUTERS_APPLIED, router, f"{generation} {time.time():.3f}")
    if changed_apps:
        streams.add(pipe, streams.route_changes(), streams.RouteChange(generation, changed_apps))
    if new:
        pipe.publish(APPLIED_CHANNEL, str(generation))
    pipe.execute()


def routers_applied(client: Client, generation: int, now: float | None = None) -> bool:
    """Every live router (heard from within ROUTER_LIVE seconds) applied `generation` or a
    later one; False when no router is live."""
    now = time.time() if now is None else now
    live = []
    for value in client.hgetall(ROUTERS_APPLIED).values():
        applied, _, seen = (value.decode() if isinstance(value, bytes) else value).partition(" ")
        if float(seen or 0) >= now - ROUTER_LIVE:
            live.append(int(applied))
    return bool(live) and min(live) >= generation


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
