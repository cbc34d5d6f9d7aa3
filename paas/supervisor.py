"""`paas up`: runs the platform's processes from the top-level Procfile, in the foreground.

Services start in order (redis, then the API, which creates the tokens the others use, then
the rest), a crashed service restarts with backoff, and every output line is prefixed with its
service's name. SIGINT/SIGTERM stop the control plane only: dynos (own sessions) and nginx
(a daemon) keep serving, and the next `paas up` adopts them.

`paas up` runs its checks and sets up the dyno networks' firewall, then execs `python -m
paas.supervisor`: the process that stays up for the platform's life holds the supervisor's
modules only (standard library and a few of paas's), not the CLI's, the doctor's, the
runtime's, httpx or redis."""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from paas import roles
from paas.builder.procfile import parse_procfile
from paas.service_cgroups import ServiceCgroups
from paas.settings import Settings, load

PR_SET_PDEATHSIG = 1
READY_TIMEOUT = 60.0
MAX_BACKOFF = 30.0
ORDER = ("redis", "api")
# A service that ran this long before it exited was healthy: it restarts after 1 s again (a
# killed build worker must be back, and redeliver its build, before the reaper fails it).
HEALTHY_RUN = 60.0
# A SIGKILL this soon after an OOM kill in the service's cgroup was that OOM kill.
OOM_WINDOW = 5.0


@dataclass
class Service:
    name: str
    command: str
    process: subprocess.Popen | None = None
    failures: int = 0
    restart_at: float = 0.0
    started_at: float = 0.0


def _die_with_parent() -> None:
    """Runs in each child before exec: if `paas up` dies, even by SIGKILL, its services get
    SIGTERM instead of living on as orphans."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def write_redis_config(settings: Settings) -> None:
    directory = settings.redis_socket.parent
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(directory, 0o700)
    (directory / "redis.conf").write_text(
        "port 0\n"
        f"unixsocket {settings.redis_socket}\n"
        "unixsocketperm 700\n"
        f"dir {directory}\n"
        "appendonly yes\n"
        "save 60 1000\n"
        "daemonize no\n"
        "loglevel warning\n"
        + _redis_memory_limit(settings)
    )


# Of Redis's memory cgroup, what its data may take; the rest is for the AOF rewrite's fork,
# client buffers and fragmentation.
REDIS_DATA_SHARE = 0.75


def _redis_memory_limit(settings: Settings) -> str:
    """Redis refuses writes (OOM command not allowed) once its data reaches the share of its
    cgroup's limit, instead of growing into the cgroup's OOM killer and restarting in a loop
    on an AOF that no longer fits."""
    if settings.redis_memory_mb <= 0:
        return ""
    data_mb = int(settings.redis_memory_mb * REDIS_DATA_SHARE)
    return f"maxmemory {data_mb}mb\nmaxmemory-policy noeviction\n"


class Supervisor:
    def __init__(self, settings: Settings, procfile: Path) -> None:
        self.settings = settings
        types = roles.split(parse_procfile(procfile.read_text()), settings.roles_apart)
        if settings.redis_url_override:
            types.pop("redis", None)
        self.services = [Service(name, command) for name, command in types.items()]
        self.services.sort(key=lambda s: ORDER.index(s.name) if s.name in ORDER else len(ORDER))
        self.stopping = threading.Event()
        self.oom_kills: dict[str, float] = {}  # service: when its cgroup last saw one
        self.width = max(len(s.name) for s in self.services)
        self.env = {**os.environ, "PAAS_HOME": str(settings.home),
                    "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
                    "PYTHONUNBUFFERED": "1"}

    def run(self) -> int:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: self.stopping.set())
        if "redis" in {s.name for s in self.services}:
            write_redis_config(self.settings)
        self.cgroups = ServiceCgroups(self.settings, [s.name for s in self.services],
                                      lambda line: self.say("paas", line),
                                      {s.name: roles.hosted(s.command) for s in self.services})
        if self.cgroups.home is not None:
            # Moved after they started, the dyno monitors' memory would stay charged to the
            # agent (neither cgroup v1 nor v2 moves charges): they start in `paas up`'s cgroup.
            self.env["PAAS_DETACHED_CGROUP"] = str(self.cgroups.home)
        try:
            return self._run()
        finally:
            self.cgroups.remove()

    def _run(self) -> int:
        for service in self.services:
            self._start(service)
            self._wait_ready(service)
        self.say("paas", f"up: API {self.settings.api_url}, router on port "
                         f"{self.settings.router_port}, apps at http://<app>.{self.settings.domain}")
        while not self.stopping.wait(0.5):
            self.oom_kills.update(dict.fromkeys(self.cgroups.check(), time.monotonic()))
            self._restart_crashed()
        self._stop_all()
        return 0

    def say(self, name: str, line: str) -> None:
        print(f"{name:<{self.width}} | {line}", flush=True)

    def _start(self, service: Service) -> None:
        service.started_at = time.monotonic()
        service.process = subprocess.Popen(
            ["/bin/sh", "-c", f"exec {service.command}"], env=self.env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=Path(__file__).parent.parent,
            preexec_fn=self._preexec(service))
        threading.Thread(target=self._relay, args=(service, service.process), daemon=True).start()

    def _preexec(self, service: Service) -> Callable[[], None]:
        join_cgroup = self.cgroups.preexec(service.name)

        def preexec() -> None:
            _die_with_parent()
            join_cgroup()

        return preexec

    def _relay(self, service: Service, process: subprocess.Popen) -> None:
        assert process.stdout is not None
        for raw in process.stdout:
            self.say(service.name, raw.decode(errors="replace").rstrip())

    def _wait_ready(self, service: Service) -> None:
        check = {"redis": self._redis_ready, "api": self._api_ready}.get(service.name)
        deadline = time.monotonic() + READY_TIMEOUT
        while check and not check():
            if self.stopping.is_set() or time.monotonic() > deadline:
                raise SystemExit(f"paas up: {service.name} did not become ready; see its output")
            if service.process and service.process.poll() is not None:
                raise SystemExit(f"paas up: {service.name} exited at start; see its output")
            time.sleep(0.1)

    def _redis_ready(self) -> bool:
        """The Redis `paas up` runs answers PING on its unix socket (an inline command)."""
        try:
            with socket.socket(socket.AF_UNIX) as client:
                client.settimeout(1.0)
                client.connect(str(self.settings.redis_socket))
                client.sendall(b"PING\r\n")
                return client.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def _api_ready(self) -> bool:
        """GET /healthz answers 200: one HTTP/1.0 request on a plain socket (http.client would
        bring email and ssl into the process that stays up, ~2 MiB)."""
        url = urlsplit(self.settings.api_url)
        try:
            with socket.create_connection((url.hostname or "127.0.0.1", url.port or 80),
                                          timeout=1.0) as client:
                client.sendall(b"GET /healthz HTTP/1.0\r\nHost: paas\r\n\r\n")
                status = client.recv(64).split(b"\r\n", 1)[0].split()
                return len(status) >= 2 and status[1] == b"200"
        except OSError:
            return False

    def _restart_crashed(self) -> None:
        now = time.monotonic()
        for service in self.services:
            if service.process is None or service.process.poll() is None:
                continue
            if service.restart_at == 0.0:
                if now - service.started_at > HEALTHY_RUN:
                    service.failures = 0
                service.failures += 1
                delay = min(MAX_BACKOFF, 2 ** (service.failures - 1))
                service.restart_at = now + delay
                self.say("paas", f"{self._why_exited(service)}; restarting in {delay:g} s")
            elif now >= service.restart_at:
                service.restart_at = 0.0
                self._start(service)

    def _why_exited(self, service: Service) -> str:
        assert service.process is not None
        code = service.process.returncode
        oom_killed = time.monotonic() - self.oom_kills.pop(service.name, 0.0) < OOM_WINDOW
        if code == -signal.SIGKILL and oom_killed:
            return (f"{service.name} was OOM-killed: it went over "
                    f"{self.cgroups.describe(service.name) or 'the host memory'}")
        return f"{service.name} exited ({code})"

    def _stop_all(self) -> None:
        self.say("paas", "stopping the control plane (dynos and the router keep serving)")
        for service in reversed(self.services):
            if service.process and service.process.poll() is None:
                service.process.terminate()
        deadline = time.monotonic() + 20
        for service in reversed(self.services):
            if service.process is None:
                continue
            try:
                service.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                service.process.kill()
                service.process.wait()


def pid_path(settings: Settings) -> Path:
    return settings.home / "paas-up.pid"


def main() -> None:
    """`python -m paas.supervisor PROCFILE`, exec'd by `paas up` (which wrote the pid file)."""
    settings = load()
    try:
        raise SystemExit(Supervisor(settings, Path(sys.argv[1])).run())
    finally:
        pid_path(settings).unlink(missing_ok=True)


if __name__ == "__main__":
    main()
