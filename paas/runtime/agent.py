"""The local agent: a reconcile loop. Desired dynos come from the API, actual ones from runc;
it starts what is missing, stops what is not wanted, checks health, restarts crashed dynos
with backoff, ships their output to the log stream and reports every dyno's state.

Killed and started again, it adopts the running dynos: their state lives on disk and in runc,
and a per-dyno offset file says how much of each output log was already shipped."""

from __future__ import annotations

import secrets
import signal
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from paas.client import ApiClient
from paas.errors import PaasError
from paas.logs import RedisEvents
from paas.models import DynoState
from paas.runtime import DynoSpec, DynoStatus, Runtime
from paas.settings import Settings, load
from paas.slugs.layers import LayerStore

Key = tuple[str, int, str, int]  # app, release, process type, index
MAX_SHIP_BYTES = 256 * 1024


def key_of(metadata: dict[str, str]) -> Key:
    return (metadata["app"], int(metadata["release"]), metadata["type"], int(metadata["index"]))


def dyno_name(key: Key) -> str:
    return f"{key[2]}.{key[3]}"


@dataclass
class Crash:
    count: int = 0
    last: float = 0.0


@dataclass
class Agent:
    settings: Settings
    runtime: Runtime
    store: LayerStore
    api: ApiClient
    events: RedisEvents
    states: dict[str, DynoState] = field(default_factory=dict)
    crashes: dict[Key, Crash] = field(default_factory=dict)
    stopping: set[str] = field(default_factory=set)
    pool: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(8))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reconcile(self) -> None:
        wanted = {self._key(d): d for d in self.api.get("/v1/internal/desired")["dynos"]}
        actual = self.runtime.list_dynos()
        running: dict[Key, DynoStatus] = {}
        for dyno in actual:
            key = key_of(dyno.metadata)
            self._ship_logs(dyno)
            if dyno.id in self.stopping:
                continue
            if key not in wanted:
                self._stop(dyno, key)
            elif dyno.state == "exited" and self.states.get(dyno.id) == DynoState.CRASHED:
                self._stop(dyno, key)  # reported as crashed once already: clean it up
            elif dyno.state == "exited":
                self._crashed(dyno, key)
            else:
                running[key] = dyno
                self._check_health(dyno, key, wanted[key])
        for key, spec in wanted.items():
            if key not in running and self._may_start(key):
                self._start(key, spec)
        self._report()

    @staticmethod
    def _key(desired: dict[str, Any]) -> Key:
        return (desired["app"], desired["release"], desired["type"], desired["index"])

    def _start(self, key: Key, desired: dict[str, Any]) -> None:
        layers = [self.store.unpacked(d, desired["uid"]) for d in reversed(desired["layers"])]
        metadata = {"app": key[0], "release": str(key[1]), "type": key[2],
                    "index": str(key[3]), "port": str(desired["port"]),
                    "restarts": str(self.crashes.get(key, Crash()).count)}
        spec = DynoSpec(id=f"{key[0]}-{secrets.token_hex(5)}", app=key[0],
                        app_index=desired["slot"], uid=desired["uid"],
                        command=desired["command"], env=desired["env"], layers=layers,
                        memory_mb=desired["memory_mb"], pids_limit=desired["pids"],
                        metadata=metadata)
        self._platform_log(key, f"Starting process with command `{desired['command'][-1]}`")
        try:
            status = self.runtime.start_dyno(spec)
        except Exception as error:  # a dyno that cannot start is a crash, not an agent failure
            self._platform_log(key, f"Error starting {dyno_name(key)}: {error}")
            self.crashes.setdefault(key, Crash()).count += 1
            self.crashes[key].last = time.time()
            return
        self.states[status.id] = DynoState.STARTING

    def _stop(self, dyno: DynoStatus, key: Key) -> None:
        self.stopping.add(dyno.id)
        if dyno.state == "running":
            self._platform_log(key, "Stopping process with SIGTERM")

        def stop() -> None:
            try:
                if dyno.state == "running" and self.runtime.stop_dyno(
                        dyno.id, self.settings.stop_grace):
                    self._platform_log(key, "Error R12 (Exit timeout) -> SIGKILL sent")
                self._ship_logs(dyno)
                self.runtime.remove_dyno(dyno.id)
            finally:
                with self.lock:
                    self.stopping.discard(dyno.id)
                    self.states.pop(dyno.id, None)

        self.pool.submit(stop)

    def _crashed(self, dyno: DynoStatus, key: Key) -> None:
        if self.states.get(dyno.id) == DynoState.CRASHED:
            return
        self.states[dyno.id] = DynoState.CRASHED
        crash = self.crashes.setdefault(key, Crash())
        crash.count += 1
        crash.last = time.time()
        self._platform_log(key, f"State changed from up to crashed (exit code {dyno.exit_code})")

    def _may_start(self, key: Key) -> bool:
        crash = self.crashes.get(key)
        if crash is None or crash.count <= 1:
            return True
        delay = min(self.settings.restart_backoff_cap,
                    self.settings.restart_backoff * 2 ** (crash.count - 2))
        return time.time() - crash.last >= delay

    def _check_health(self, dyno: DynoStatus, key: Key, desired: dict[str, Any]) -> None:
        state = self.states.get(dyno.id, DynoState.STARTING)
        if state != DynoState.STARTING:
            return
        if key[2] != "web" or _accepts(dyno.ip, desired["port"]):
            self.states[dyno.id] = DynoState.UP
            self._platform_log(key, "State changed from starting to up")
        elif time.time() - dyno.started_at > self.settings.boot_timeout:
            self._platform_log(key, "Error R10 (Boot timeout) -> Web process failed to bind to "
                                    f"$PORT within {self.settings.boot_timeout:g} seconds")
            self.states[dyno.id] = DynoState.CRASHED
            self.crashes.setdefault(key, Crash()).count += 1
            self.crashes[key].last = time.time()
            self._stop(dyno, key)

    def _report(self) -> None:
        reported = []
        for dyno in self.runtime.list_dynos():
            key = key_of(dyno.metadata)
            state = self.states.get(dyno.id)
            if state is None:
                state = DynoState.CRASHED if dyno.state == "exited" else DynoState.STARTING
            if dyno.id in self.stopping:
                state = DynoState.DOWN
            reported.append({
                "id": dyno.id, "app": key[0], "release": key[1], "type": key[2],
                "index": key[3], "state": str(state), "ip": dyno.ip,
                "port": int(dyno.metadata.get("port", self.settings.dyno_port)),
                "started_at": dyno.started_at, "exit_code": dyno.exit_code,
                "restarts": self.crashes.get(key, Crash()).count,
                "output_tail": _tail(dyno.log_path) if state == DynoState.CRASHED else "",
            })
        self.api.put("/v1/internal/dynos", {"dynos": reported})

    def _ship_logs(self, dyno: DynoStatus) -> None:
        offset_file = dyno.log_path.with_name("shipped")
        with self.lock:
            try:
                offset = int(offset_file.read_text() or 0)
            except (FileNotFoundError, ValueError):
                offset = 0
            try:
                with dyno.log_path.open("rb") as f:
                    f.seek(offset)
                    chunk = f.read(MAX_SHIP_BYTES)
            except FileNotFoundError:
                return
            complete = chunk[: chunk.rfind(b"\n") + 1]
            if not complete:
                return
            source = f"app[{dyno_name(key_of(dyno.metadata))}]"
            for line in complete.decode(errors="replace").splitlines():
                self.events.app_log(dyno.metadata["app"], source, line)
            offset_file.write_text(str(offset + len(complete)))

    def _platform_log(self, key: Key, line: str) -> None:
        self.events.app_log(key[0], f"paas[{dyno_name(key)}]", line)


def _accepts(ip: str, port: int) -> bool:
    try:
        with socket.create_connection((ip, port), timeout=0.5):
            return True
    except OSError:
        return False


def _tail(path: Path, lines: int = 20) -> str:
    try:
        data = path.read_bytes()[-8192:]
    except FileNotFoundError:
        return ""
    return "\n".join(data.decode(errors="replace").splitlines()[-lines:])


def main() -> None:
    settings = load()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    agent = Agent(settings, Runtime(settings), LayerStore(settings),
                  ApiClient(settings.api_url, settings.service_token_path.read_text().strip()),
                  RedisEvents(client, settings.log_lines))
    while not stop.is_set():
        try:
            agent.reconcile()
        except (PaasError, redis.RedisError, OSError) as error:
            print(f"agent: {error}", file=sys.stderr, flush=True)
        stop.wait(settings.agent_interval)
    agent.pool.shutdown(wait=True)


if __name__ == "__main__":
    main()
