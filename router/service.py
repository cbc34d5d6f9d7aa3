"""`python -m router`: keep nginx up and its route table equal to the API's.

Polls once a second, and at once on a message on the Redis channel "paas:routes". nginx is left
running on exit: dynos and nginx outlive the control plane.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
from types import FrameType

import httpx
import redis

from paas.errors import PaasError
from paas.settings import Settings
from router.nginx import Router

CHANNEL = "paas:routes"
POLL_INTERVAL = 1.0
log = logging.getLogger("router")


class _Complaints:
    """Log a failure once, not once a second, and say when it is over."""

    def __init__(self) -> None:
        self._failing: set[str] = set()
        self._lock = threading.Lock()

    def fail(self, what: str, exc: BaseException) -> None:
        with self._lock:
            if what not in self._failing:
                self._failing.add(what)
                message = (str(exc).splitlines() or [type(exc).__name__])[0]
                log.error("at=error what=%s error=%r", what, message)

    def ok(self, what: str) -> None:
        with self._lock:
            if what in self._failing:
                self._failing.discard(what)
                log.info("at=info what=%s recovered", what)


APPLIED_KEY = "paas:routes:applied"


def fetch_routes(settings: Settings) -> tuple[dict[str, list[str]], int]:
    """The API's route table and its generation (how many route changes it includes)."""
    token = settings.service_token_path.read_text().strip()
    response = httpx.get(
        f"{settings.api_url}/v1/internal/routes",
        headers={"Authorization": f"Bearer {token}"},
        timeout=5.0,
    )
    response.raise_for_status()
    body = response.json()
    routes = {str(host): [str(peer) for peer in peers] for host, peers in body["routes"].items()}
    return routes, int(body.get("generation", 0))


def acknowledge(settings: Settings, generation: int) -> None:
    """Tells the API (through Redis) which generation nginx now serves, so a deploy can say
    "deployed" only once its routes are live."""
    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=2.0)
    try:
        client.set(APPLIED_KEY, generation)
    finally:
        client.close()


def listen(url: str, wake: threading.Event, stop: threading.Event, complaints: _Complaints) -> None:
    """Set `wake` on every message on CHANNEL; reconnect forever."""
    while not stop.is_set():
        client = redis.Redis.from_url(url, socket_connect_timeout=2.0)
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.subscribe(CHANNEL)
            complaints.ok("redis")
            wake.set()  # whatever was published while we were away
            while not stop.is_set():
                if pubsub.get_message(timeout=1.0) is not None:
                    wake.set()
        except (redis.RedisError, OSError) as exc:
            complaints.fail("redis", exc)
            stop.wait(1.0)
        finally:
            pubsub.close()
            client.close()


def sync_once(router: Router, settings: Settings, complaints: _Complaints) -> None:
    try:
        router.ensure_nginx()
        complaints.ok("nginx")
    except (PaasError, OSError, subprocess.SubprocessError) as exc:
        complaints.fail("nginx", exc)
        return
    try:
        wanted, generation = fetch_routes(settings)
        complaints.ok("api")
    except (OSError, httpx.HTTPError, ValueError, KeyError, TypeError, AttributeError) as exc:
        complaints.fail("api", exc)
        return
    try:
        # Compared with what nginx holds, not with what was last sent: a restarted nginx
        # starts with an empty table.
        if router.get_routes() != wanted:
            router.set_routes(wanted)
            log.info("at=info routes=%d applied", len(wanted))
        complaints.ok("routes")
    except PaasError as exc:
        complaints.fail("routes", exc)
        return
    try:
        acknowledge(settings, generation)
    except (redis.RedisError, OSError) as exc:
        complaints.fail("redis", exc)


def main() -> None:
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="router: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    settings = Settings()
    router = Router(settings)
    complaints = _Complaints()
    stop = threading.Event()
    wake = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()
        wake.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    threading.Thread(
        target=listen, args=(settings.redis_url, wake, stop, complaints), daemon=True
    ).start()
    while not stop.is_set():
        sync_once(router, settings, complaints)
        wake.wait(POLL_INTERVAL)
        wake.clear()
    log.info("at=info stopping; nginx keeps serving")
