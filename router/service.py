"""`python -m router`: keep nginx up and its route table equal to the API's; ingest nginx's
access log into the apps' log streams and figures.

Polls once a second, and at once on a message on the Redis channel of route changes
(`paas/notify.py`). Route changes are pushed into nginx's shared dict at once; certificate
changes reload nginx at most once per RELOAD_INTERVAL, so a burst of them costs one reload.
nginx is left running on exit: dynos and nginx outlive the control plane.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from types import FrameType

import httpx
import redis

from paas import metrics, notify, redis_clients, streams
from paas.client import ssl_context
from paas.errors import PaasError
from paas.settings import Settings
from paas.stopping import wake_on
from paas.wire import RouteTable
from router.dataplane import DataPlane
from router.nginx import Cert, Challenge, ConfigRejected, Route, Router

POLL_INTERVAL = 1.0
RELOAD_INTERVAL = 1.0
LOG_SOURCE = "router"
FLUSH_INTERVAL = 0.25
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


@dataclass(frozen=True)
class Wanted:
    routes: dict[str, Route]
    certificates: tuple[Cert, ...]
    generation: int
    challenges: tuple[Challenge, ...] = ()


def fetch(settings: Settings, client: httpx.Client) -> Wanted:
    """The API's route table, certificates and generation (how many changes it includes)."""
    token = settings.service_token_path.read_text().strip()
    response = client.get(
        f"{settings.api_url}/v1/internal/routes",
        headers={"Authorization": f"Bearer {token}"},
    )
    response.raise_for_status()
    table = RouteTable.from_json(response.json())
    return Wanted(table.routes, table.certificates, table.generation,
                  tuple(sorted(table.challenges, key=lambda c: c.token)))


def changed_apps(before: dict[str, Route], after: dict[str, Route]) -> tuple[str, ...]:
    """The apps whose route `after` changes (a hostname added, removed or routed anew)."""
    apps = {route.app for host, route in after.items() if before.get(host) != route}
    apps |= {route.app for host, route in before.items() if host not in after}
    return tuple(sorted(apps))


def listen(url: str, wake: threading.Event, stop: threading.Event, complaints: _Complaints) -> None:
    """Set `wake` on every route change the API announces; reconnect forever."""
    notify.listen(url, (notify.ROUTES_CHANNEL,), wake, stop,
                  on_error=lambda exc: complaints.fail("redis", exc),
                  on_ok=lambda: complaints.ok("redis"))


@dataclass
class Syncer:
    """One pass of the control loop, with what it must remember between passes."""

    router: DataPlane
    settings: Settings
    complaints: _Complaints
    redis: redis.Redis
    last_routes: dict[str, Route] | None = None
    acknowledged: int = -1
    last_reload: float = 0.0
    pending_certs: bool = False
    # One client, not one per request (see Router.control).
    api: httpx.Client = field(default_factory=lambda: httpx.Client(
        timeout=5.0, limits=httpx.Limits(max_keepalive_connections=0),
        verify=ssl_context()))

    def sync_once(self) -> None:
        wanted = self._fetch()
        if not self._ensure_running(wanted):
            return
        if wanted is None:
            return
        try:
            changed = self._apply(wanted)
        except PaasError as exc:
            self.complaints.fail("routes", exc)
            return
        try:
            # Told (published) once per generation: the agents wake on it.
            notify.acknowledge(self.redis, wanted.generation, changed,
                               new=wanted.generation != self.acknowledged,
                               router=self.settings.node_name)
            self.acknowledged = wanted.generation
        except (redis.RedisError, OSError) as exc:
            self.complaints.fail("redis", exc)

    def _apply(self, wanted: Wanted) -> tuple[str, ...]:
        """Pushes the wanted routes into nginx; the apps whose routes changed."""
        # Compared with what nginx holds, not with what was last sent: a restarted nginx
        # starts with an empty table.
        serving = self.router.get_routes()
        changed: tuple[str, ...] = ()
        if serving != wanted.routes:
            self.router.set_routes(wanted.routes)
            changed = changed_apps(serving, wanted.routes)
            log.info("at=info routes=%d applied generation=%d", len(wanted.routes),
                     wanted.generation)
        self.last_routes = wanted.routes
        # Acknowledged with the generation below: the orderer answers the CA only then.
        if self.router.get_challenges() != wanted.challenges:
            self.router.set_challenges(wanted.challenges)
            log.info("at=info challenges=%d applied generation=%d", len(wanted.challenges),
                     wanted.generation)
        self.complaints.ok("routes")
        return changed

    def _fetch(self) -> Wanted | None:
        try:
            wanted = fetch(self.settings, self.api)
        except (OSError, httpx.HTTPError, ValueError, KeyError, TypeError, AttributeError) as exc:
            self.complaints.fail("api", exc)
            return None
        self.complaints.ok("api")
        return wanted

    def _ensure_running(self, wanted: Wanted | None) -> bool:
        """nginx running with the wanted certificates (at most one reload per
        RELOAD_INTERVAL); a restarted nginx gets the last known routes even without the API."""
        certs = None
        self.pending_certs = False
        if wanted is not None and wanted.certificates != self.router.certificates:
            if time.monotonic() - self.last_reload >= RELOAD_INTERVAL:
                certs = wanted.certificates
                self.last_reload = time.monotonic()
            else:
                self.pending_certs = True
        try:
            started = self.router.ensure_running(certs)
            self.complaints.ok("nginx")
            self.complaints.ok("config")
        except ConfigRejected as exc:
            self.complaints.fail("config", exc)
            started = False
        except (PaasError, OSError, subprocess.SubprocessError) as exc:
            self.complaints.fail("nginx", exc)
            return False
        if certs is not None:
            log.info("at=info certificates=%d reloads=%d", len(certs), self.router.reloads)
        if started:
            log.info("at=info nginx started")
            if self.last_routes is not None and wanted is None:
                with contextlib.suppress(PaasError):
                    self.router.set_routes(self.last_routes)
        return True


# -- router log lines -------------------------------------------------------------------------

_STATUS = re.compile(r" status=(\d{3}) ")
_SERVICE = re.compile(r" service=(\d+)ms ")
_CODE = re.compile(r" code=(H\d\d) ")


def parse_datagram(data: bytes) -> list[tuple[str, str]]:
    """(app, Heroku-format line) of each line of one datagram nginx sent: lines
    "<app> at=..." joined by newlines (router/lua/paas_router.lua batches them)."""
    found = []
    for text in data.decode("utf-8", errors="replace").split("\n"):
        app, _, line = text.partition(" ")
        if line.startswith("at="):
            found.append((app, line))
    return found


@dataclass
class LogShipper:
    """Buffers router lines and figures; `flush` sends them to Redis in one round trip."""

    client: redis.Redis
    log_lines: int
    lines: list[tuple[str, str]] = field(default_factory=list)
    aggregator: metrics.Aggregator = field(default_factory=metrics.Aggregator)

    def add(self, app: str, line: str) -> None:
        if app == "-":  # no app: the platform's own log
            log.info("%s", line)
            return
        self.lines.append((app, line))
        status = _STATUS.search(line)
        service = _SERVICE.search(line)
        code = _CODE.search(line)
        self.aggregator.add(app, int(status.group(1)) if status else 0,
                            int(service.group(1)) if service else 0,
                            code.group(1) if code else None)

    def flush(self) -> None:
        if self.lines:
            by_app: dict[str, list[str]] = {}
            for app, line in self.lines:
                by_app.setdefault(app, []).append(line)
            for app, lines in by_app.items():
                streams.write_log_lines(self.client, app, LOG_SOURCE, lines, self.log_lines)
            self.lines.clear()
        self.aggregator.flush(self.client)


def bind_log_socket(path: str) -> socket.socket:
    """The unix datagram socket nginx's workers (user nobody) send access log lines to."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    sock.bind(path)
    nobody = pwd.getpwnam("nobody").pw_uid
    os.chown(path, nobody, -1)
    os.chmod(path, 0o600)
    sock.settimeout(FLUSH_INTERVAL)
    return sock


def receive(sock: socket.socket, shipper: LogShipper, most: int = 10000) -> None:
    """What nginx sent: waits for one datagram (up to the socket's timeout), then takes
    those already queued without waiting. A socket with a timeout polls before every recv;
    its descriptor is non-blocking, so os.read takes a datagram in one syscall."""
    with contextlib.suppress(TimeoutError):
        data = sock.recv(65536)
        for _ in range(most):
            for app, line in parse_datagram(data):
                shipper.add(app, line)
            try:
                data = os.read(sock.fileno(), 65536)
            except BlockingIOError:
                return


def ship_logs(sock: socket.socket, shipper: LogShipper, stop: threading.Event,
              complaints: _Complaints) -> None:
    next_flush = time.monotonic() + FLUSH_INTERVAL
    while not stop.is_set():
        receive(sock, shipper)
        if time.monotonic() >= next_flush:
            next_flush = time.monotonic() + FLUSH_INTERVAL
            try:
                shipper.flush()
                complaints.ok("logs")
            except (redis.RedisError, OSError) as exc:
                complaints.fail("logs", exc)
                shipper.lines.clear()
                shipper.aggregator.counts.clear()


def configure_logging() -> None:
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="router: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)


def main() -> None:
    configure_logging()
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    serve(Settings(), stop)


def serve(settings: Settings, stop: threading.Event) -> None:
    """The router until `stop` is set (`python -m paas.roles` hosts it beside other roles)."""
    router = Router(settings)
    complaints = _Complaints()
    wake = threading.Event()
    wake_on(stop, wake)
    settings.router_dir.mkdir(parents=True, exist_ok=True)
    client = redis_clients.client(settings.redis_url)
    shipper = LogShipper(client, settings.log_lines)
    log_socket = bind_log_socket(str(router.log_socket))
    threading.Thread(target=ship_logs, args=(log_socket, shipper, stop, complaints),
                     daemon=True).start()
    threading.Thread(
        target=listen, args=(settings.redis_url, wake, stop, complaints), daemon=True
    ).start()
    syncer = Syncer(router, settings, complaints, client)
    while not stop.is_set():
        syncer.sync_once()
        wake.wait(0.2 if syncer.pending_certs else POLL_INTERVAL)
        wake.clear()
    log.info("at=info stopping; nginx keeps serving")
