"""The local agent: a reconcile loop. Desired dynos come from the API, actual ones from runc;
it starts what is missing, stops what is not wanted, checks health, restarts crashed dynos
with backoff, ships their output to the log stream and reports every dyno's state.

A web dyno that is no longer wanted keeps running until the router has applied a route table
without it (`paas:routes:applied` >= the generation after it was reported down), then gets
SIGTERM: a deploy, a restart or a scale-down drops no request.

Killed and started again, it adopts the running dynos: their state lives on disk and in runc
(the agent's notes in each dyno's `agent.json`), and a per-dyno offset file says how much of
each output log was already shipped."""

from __future__ import annotations

import json
import secrets
import signal
import sys
import threading
import time
import traceback
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import redis

from paas import redis_clients, safefs, terminals
from paas.client import ApiClient
from paas.errors import NotFound, PaasError, Permanent
from paas.logs import RedisEvents, run_stream
from paas.runtime import DynoSpec, DynoStatus, Runtime, network, outputlines
from paas.runtime.dynolog import DynoLog, dropped_count
from paas.runtime.health import accepts, http_check
from paas.settings import Settings, load
from paas.slugs.layers import LayerStore
from paas.wire import DynoState, NodeInfo

Key = tuple[str, int, str, int]  # app, release, process type, index
MAX_SHIP_BYTES = 256 * 1024
# A retiring web dyno is stopped anyway after this long without the router's acknowledgement.
ROUTES_WAIT_MAX = 30.0
RUN_STREAM_TTL = 3600
# How often the firewall table is checked: how long dynos may reach the host after something
# flushed the host's ruleset.
FIREWALL_CHECK_INTERVAL = 10.0


def key_of(metadata: dict[str, str]) -> Key:
    return (metadata["app"], int(metadata["release"]), metadata["type"], int(metadata["index"]))


def dyno_name(key: Key) -> str:
    return f"{key[2]}.{key[3]}"


@dataclass
class Crash:
    """A formation dyno's crashes since its release or its last restart (the generation)."""

    count: int = 0
    last: float = 0.0
    generation: str = ""


def load_crashes(path: Path) -> dict[Key, Crash]:
    try:
        rows = json.loads(path.read_text())
        return {(r["app"], int(r["release"]), r["type"], int(r["index"])):
                Crash(int(r["count"]), float(r["last"]), str(r["generation"])) for r in rows}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def save_crashes(path: Path, crashes: dict[Key, Crash]) -> None:
    rows = [{"app": k[0], "release": k[1], "type": k[2], "index": k[3], **asdict(c)}
            for k, c in sorted(crashes.items())]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(rows))
    tmp.replace(path)


@dataclass
class Notes:
    """What the agent knows of one dyno beyond runc's word; kept in the dyno's directory."""

    state: str = DynoState.STARTING
    reason: str = ""
    retiring_since: float = 0.0
    retire_after: int = -1  # the route generation to wait for; -1: not yet known
    check: int = 0  # index of the health check being tried
    attempts: int = 0
    next_check: float = 0.0
    oom_kills: int = 0
    finished: bool = False  # an exited dyno's end was logged
    stopped: bool = False  # the platform stopped it while it ran: its exit is no crash


@dataclass
class Agent:
    settings: Settings
    runtime: Runtime
    store: LayerStore
    api: ApiClient
    events: RedisEvents
    notes: dict[str, Notes] = field(default_factory=dict)
    # Kept on disk too: a restarted agent goes on counting (and backing off) where it was.
    crashes: dict[Key, Crash] = field(default_factory=dict)
    stopping: set[str] = field(default_factory=set)
    checks: dict[str, Future[str]] = field(default_factory=dict)
    failed_oneoffs: list[dict[str, Any]] = field(default_factory=list)
    # Formation dynos that could not start (a platform error): the API fails their release
    # at once when the error is Permanent, else keeps the reason for the release's deadline.
    failed_starts: list[dict[str, Any]] = field(default_factory=list)
    apps: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Health checks and stops have pools of their own: stops waiting out their grace must
    # not hold back the health checks of the dynos replacing them (R10).
    pool: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(8))
    stopper: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(8))
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Apps that had dynos at the last report (None: not known yet, after a start).
    apps_with_dynos: set[str] | None = None
    firewall_checked: float = 0.0  # time.monotonic() of the last check
    registered: bool = False  # with the API, as node settings.node_name

    def __post_init__(self) -> None:
        self.crashes = load_crashes(self._crashes_path())

    # ---- the loop ----------------------------------------------------------------------

    def reconcile(self) -> None:
        self._check_firewall()
        if not self.registered:
            self.register()
        try:
            desired = self.api.get(f"{self._node_path()}/desired")
        except NotFound:  # the API does not know this node (yet, or any more)
            self.register()
            desired = self.api.get(f"{self._node_path()}/desired")
        self.apps = desired.get("apps", {})
        wanted = {self._key(d): d for d in desired["dynos"]}
        self._forget_crashes(wanted)
        running: set[Key] = set()
        present: set[Key] = set()
        # Before listing: a stop that ends while this loop runs removes its dyno from
        # `stopping` and from disk, and must not make it look like a dyno to act on.
        stopping = self._stopping()
        actual = self.runtime.list_dynos()
        replaced = self._replacements_up(actual, wanted)
        for dyno in actual:
            key = key_of(dyno.metadata)
            present.add(key)
            self._ship_logs(dyno, final=dyno.state == "exited")
            if dyno.id in stopping or dyno.id in self.stopping:
                continue
            spec = wanted.get(key)
            if spec is not None and not self._same_generation(dyno, key, spec):
                if dyno.state == "running" and key not in replaced:
                    continue  # serves until its replacement is up
                spec = None
            if spec is None:
                self._retire(dyno, key)
            elif spec["oneoff"]:
                self._watch_oneoff(dyno, key)
            elif dyno.state == "exited":
                self._crashed(dyno, key)
            else:
                running.add(key)
                self._keep(dyno)
                self._watch(dyno, key, spec)
        for key, spec in wanted.items():
            if self._should_start(key, spec, running, present):
                self._start(key, spec)
        self._report()

    def _check_firewall(self) -> None:
        """Before anything that needs the API: the dynos stay off the host while it is down."""
        if time.monotonic() - self.firewall_checked < FIREWALL_CHECK_INTERVAL:
            return
        self.firewall_checked = time.monotonic()
        try:
            faults = network.repair_firewall(self.settings)
        except PaasError as error:
            print(f"agent: cannot check the firewall table: {error}", file=sys.stderr, flush=True)
            return
        if faults:
            print(f"agent: the firewall table was not whole ({'; '.join(faults)}): repaired",
                  file=sys.stderr, flush=True)

    def _stopping(self) -> set[str]:
        with self.lock:
            return set(self.stopping)

    def _should_start(self, key: Key, spec: dict[str, Any], running: set[Key],
                      present: set[Key]) -> bool:
        if spec["oneoff"]:  # never restarted
            return key not in present
        return key not in running and self._may_start(key)

    @staticmethod
    def _key(desired: dict[str, Any]) -> Key:
        return (desired["app"], desired["release"], desired["type"], desired["index"])

    def _replacements_up(self, actual: list[DynoStatus],
                         wanted: dict[Key, dict[str, Any]]) -> set[Key]:
        """Keys whose dyno of the wanted generation is up."""
        found = set()
        for dyno in actual:
            key = key_of(dyno.metadata)
            spec = wanted.get(key)
            if (spec is not None and dyno.state == "running"
                    and dyno.metadata.get("generation", "") == spec.get("generation", "")
                    and self._notes(dyno.id).state == DynoState.UP):
                found.add(key)
        return found

    @staticmethod
    def _same_generation(dyno: DynoStatus, key: Key, spec: dict[str, Any]) -> bool:
        """A resize or a ps:restart changes a dyno's generation: the old one is replaced."""
        return dyno.metadata.get("generation", "") == spec.get("generation", "")

    def _forget_crashes(self, wanted: dict[Key, dict[str, Any]]) -> None:
        """A new release (a new key), a restart or a resize (a new generation) starts the
        count and the backoff over; a dyno no longer wanted is forgotten."""
        stale = [key for key, crash in self.crashes.items() if key not in wanted
                 or crash.generation != wanted[key].get("generation", "")]
        for key in stale:
            del self.crashes[key]
        if stale:
            save_crashes(self._crashes_path(), self.crashes)

    def _crashes_path(self) -> Path:
        return self.settings.dynos_dir / "crashes.json"

    # ---- starting ----------------------------------------------------------------------

    def _start(self, key: Key, desired: dict[str, Any]) -> None:
        metadata = {"app": key[0], "release": str(key[1]), "type": key[2],
                    "index": str(key[3]), "port": str(desired["port"]),
                    "generation": desired.get("generation", ""),
                    "oneoff": "1" if desired["oneoff"] else "",
                    "attach": "1" if desired.get("attach") else "",
                    "tty": "1" if desired.get("tty") else "",
                    "build_id": desired.get("build_id") or "",
                    "memory_mb": str(desired["memory_mb"])}
        try:
            layers = [self.store.unpacked(d, desired["uid"]) for d in reversed(desired["layers"])]
            spec = DynoSpec(id=f"{key[0]}-{secrets.token_hex(5)}", app=key[0],
                            app_index=desired["slot"], uid=desired["uid"],
                            command=desired["command"], env=desired["env"], layers=layers,
                            memory_mb=desired["memory_mb"], pids_limit=desired["pids"],
                            disk_mb=desired.get("disk_mb", 0),
                            cpu_shares=desired.get("cpu_shares", 0), metadata=metadata,
                            console=_console(key) if desired.get("tty") else None,
                            stdin=_console(key)[1] if desired.get("attach")
                            and not desired.get("tty") else None)
            self._platform_log(key, f"Starting process with command `{desired['command'][-1]}`")
            if metadata["build_id"]:
                self.events.deploy_line(metadata["build_id"], "-----> Running release command: "
                                        f"{desired['command'][-1]}")
            status = self.runtime.start_dyno(spec)
        except Exception as error:  # a dyno that cannot start is a crash, not an agent failure
            self._platform_log(key, f"Error starting {dyno_name(key)} (platform error): {error}")
            if desired["oneoff"]:
                self.failed_oneoffs.append({"app": key[0], "type": key[2], "index": key[3],
                                            "error": f"the dyno could not start: {error}"})
            else:
                self.failed_starts.append({"app": key[0], "release": key[1], "type": key[2],
                                           "index": key[3],
                                           "error": str(error) or type(error).__name__,
                                           "permanent": isinstance(error, Permanent)})
            self._count_crash(key, desired.get("generation", ""))
            return
        self._note(status.id, state=DynoState.UP if desired["oneoff"] else DynoState.STARTING)

    def _may_start(self, key: Key) -> bool:
        """At once after a first crash, then after backoff, doubling up to the cap."""
        crash = self.crashes.get(key)
        if crash is None or crash.count <= 1:
            return True
        delay = min(self.settings.restart_backoff_cap,
                    self.settings.restart_backoff * 2 ** (crash.count - 2))
        return time.time() - crash.last >= delay

    # ---- watching ----------------------------------------------------------------------

    def _watch(self, dyno: DynoStatus, key: Key, desired: dict[str, Any]) -> None:
        self._check_memory(dyno, key)
        notes = self._notes(dyno.id)
        if notes.state != DynoState.STARTING:
            return
        checks = desired.get("healthchecks") or []
        if key[2] != "web":
            self._up(dyno, key)
        elif checks:
            self._http_health(dyno, key, desired, checks)
        elif accepts(dyno.ip, desired["port"]):
            self._up(dyno, key)
        if self._notes(dyno.id).state == DynoState.STARTING and (
                time.time() - dyno.started_at > self.settings.boot_timeout):
            self._fail_boot(dyno, key, "Error R10 (Boot timeout) -> Web process failed to bind "
                            f"to $PORT within {self.settings.boot_timeout:g} seconds of launch")

    def _up(self, dyno: DynoStatus, key: Key) -> None:
        self._note(dyno.id, state=DynoState.UP)
        self._platform_log(key, "State changed from starting to up")

    def _http_health(self, dyno: DynoStatus, key: Key, desired: dict[str, Any],
                     checks: list[dict[str, Any]]) -> None:
        notes = self._notes(dyno.id)
        check = checks[notes.check]
        future = self.checks.get(dyno.id)
        if future is None:
            start = dyno.started_at + float(check.get("initialDelay", 0))
            if time.time() >= max(start, notes.next_check):
                self.checks[dyno.id] = self.pool.submit(
                    http_check, dyno.ip, desired["port"], check)
            return
        if not future.done():
            return
        del self.checks[dyno.id]
        failure = future.result()
        if not failure:
            self._platform_log(key, f"Health check {check['path']} passed")
            if notes.check + 1 < len(checks):
                self._note(dyno.id, check=notes.check + 1, attempts=0, next_check=0.0)
            else:
                self._up(dyno, key)
            return
        attempts = notes.attempts + 1
        self._platform_log(key, f"Health check {check['path']} failed "
                                f"(attempt {attempts} of {check['attempts']}): {failure}")
        if attempts >= check["attempts"]:
            self._fail_boot(dyno, key, f"health check GET {check['path']} failed "
                                       f"{attempts} times: {failure}")
        else:
            self._note(dyno.id, attempts=attempts,
                       next_check=time.time() + float(check.get("wait", 5)))

    def _fail_boot(self, dyno: DynoStatus, key: Key, reason: str) -> None:
        self._platform_log(key, reason)
        self._platform_log(key, "Stopping process with SIGKILL")
        self._platform_log(key, "State changed from starting to crashed")
        self._note(dyno.id, state=DynoState.CRASHED, reason=reason)
        self._count_crash(key, dyno.metadata.get("generation", ""))
        self._stop(dyno, key, grace=0)

    def _check_memory(self, dyno: DynoStatus, key: Key) -> None:
        kills = self.runtime.oom_kills(dyno.id)
        notes = self._notes(dyno.id)
        if kills > notes.oom_kills:
            memory = int(dyno.metadata.get("memory_mb", 0)) or None
            self._platform_log(key, "Error R15 (Memory quota vastly exceeded) -> a process "
                               "was killed for using more than the dyno's memory"
                               + (f" ({memory} MB)" if memory else ""))
            self._note(dyno.id, oom_kills=kills)

    def _crashed(self, dyno: DynoStatus, key: Key) -> None:
        notes = self._notes(dyno.id)
        if notes.state == DynoState.CRASHED:
            self._stop(dyno, key)  # reported as crashed once already: clean it up
            return
        self._check_memory(dyno, key)
        self._platform_log(key, f"Process exited with status {dyno.exit_code}")
        self._platform_log(key, f"State changed from {notes.state} to crashed")
        self._note(dyno.id, state=DynoState.CRASHED, finished=True)
        self._count_crash(key, dyno.metadata.get("generation", ""))

    def _count_crash(self, key: Key, generation: str) -> None:
        crash = self.crashes.setdefault(key, Crash(generation=generation))
        crash.count += 1
        crash.last = time.time()
        save_crashes(self._crashes_path(), self.crashes)

    def _watch_oneoff(self, dyno: DynoStatus, key: Key) -> None:
        notes = self._notes(dyno.id)
        if dyno.state != "exited":
            self._check_memory(dyno, key)
            return
        if notes.finished:
            return
        self._check_memory(dyno, key)
        code = dyno.exit_code
        self._platform_log(key, f"Process exited with status {code}")
        ended = "complete" if code == 0 else "crashed"
        self._platform_log(key, f"State changed from up to {ended}")
        self._end_oneoff(dyno, code)
        self._note(dyno.id, state=DynoState.DOWN if code == 0 else DynoState.CRASHED,
                   finished=True)

    def _end_oneoff(self, dyno: DynoStatus, code: int | None) -> None:
        meta = dyno.metadata
        if meta.get("attach"):
            stream = run_stream(meta["app"], dyno_name(key_of(meta)))
            self.events.client.xadd(stream, {"end": str(code)})
            self.events.client.expire(stream, RUN_STREAM_TTL)
            self.events.client.expire(terminals.input_stream(meta["app"], dyno_name(key_of(meta))),
                                      RUN_STREAM_TTL)
        if meta.get("build_id") and code == 0:
            self.events.deploy_line(meta["build_id"], "-----> Release command succeeded")

    # ---- stopping ----------------------------------------------------------------------

    def _retire(self, dyno: DynoStatus, key: Key) -> None:
        """A dyno no longer wanted. A running web dyno is first reported down, and stopped
        once the router applied a table without it."""
        if dyno.state == "exited" or key[2] != "web":
            self._stop(dyno, key)
            return
        notes = self._notes(dyno.id)
        if not notes.retiring_since:
            self._note(dyno.id, retiring_since=time.time())
            return
        waited = time.time() - notes.retiring_since
        if notes.retire_after >= 0 and (self.events.routes_applied() >= notes.retire_after
                                        or waited > ROUTES_WAIT_MAX):
            self._stop(dyno, key)

    def _keep(self, dyno: DynoStatus) -> None:
        """A retiring dyno wanted again (scaled down, then up before it was stopped) serves
        on; else it would stay `down` and, counted as running, never be replaced."""
        if self._notes(dyno.id).retiring_since:
            self._note(dyno.id, retiring_since=0.0, retire_after=-1)

    def _grace(self, app: str) -> float:
        grace = self.apps.get(app, {}).get("stop_grace")
        return self.settings.stop_grace if grace is None else float(grace)

    def _stop(self, dyno: DynoStatus, key: Key, grace: float | None = None) -> None:
        self.stopping.add(dyno.id)
        if dyno.state == "running":
            self._note(dyno.id, stopped=True)
        grace = self._grace(key[0]) if grace is None else grace
        if dyno.state == "running" and grace > 0:
            self._platform_log(key, "Stopping all processes with SIGTERM")

        def stop() -> None:
            try:
                if dyno.state == "running" and self.runtime.stop_dyno(dyno.id, grace) and grace:
                    self._platform_log(key, "Error R12 (Exit timeout) -> At least one process "
                                       f"failed to exit within {grace:g} seconds of SIGTERM")
                    self._platform_log(key, "Stopping remaining processes with SIGKILL")
                self._ship_logs(dyno, final=True)
                code = _exit_code(dyno.log_path)
                if dyno.metadata.get("oneoff") and not self._notes(dyno.id).finished:
                    self._check_memory(dyno, key)
                    self._platform_log(key, f"Process exited with status {code}")
                    self._end_oneoff(dyno, code)
                elif dyno.state == "running":
                    self._platform_log(key, f"Process exited with status {code}")
                self.runtime.remove_dyno(dyno.id)
            except Exception as error:  # the next reconcile tries again
                print(f"agent: stopping {dyno.id}: {error}", file=sys.stderr, flush=True)
            finally:
                with self.lock:
                    self.stopping.discard(dyno.id)
                    self.notes.pop(dyno.id, None)
                    self.checks.pop(dyno.id, None)

        self.stopper.submit(stop)

    # ---- the node -----------------------------------------------------------------------

    def _node_path(self) -> str:
        return f"/v1/internal/nodes/{self.settings.node_name}"

    def register(self) -> None:
        memory = self.settings.node_memory_mb or _host_memory_mb()
        info = NodeInfo(memory_mb=memory, dyno_subnet=self.settings.dyno_subnet)
        self.api.put(self._node_path(), info.to_json())
        self.registered = True

    # ---- reporting ---------------------------------------------------------------------

    def _report(self) -> None:
        reported = []
        retiring = []
        stopping = self._stopping()
        listed = self.runtime.list_dynos()
        for dyno in listed:
            key = key_of(dyno.metadata)
            stopped = dyno.id in stopping or dyno.id in self.stopping
            notes = self._notes(dyno.id)
            state = reported_state(DynoState(notes.state),
                                   exited=dyno.state == "exited" and not notes.stopped,
                                   exit_code=dyno.exit_code,
                                   oneoff=bool(dyno.metadata.get("oneoff")),
                                   leaving=stopped or bool(notes.retiring_since))
            if notes.retiring_since and notes.retire_after < 0:
                retiring.append(dyno.id)
            reported.append({
                "id": dyno.id, "app": key[0], "release": key[1], "type": key[2],
                "index": key[3], "state": str(state), "ip": dyno.ip,
                "port": int(dyno.metadata.get("port", self.settings.dyno_port)),
                "started_at": dyno.started_at, "exit_code": dyno.exit_code,
                "restarts": self.crashes.get(key, Crash()).count,
                "memory_mb": self.runtime.memory_mb(dyno.id) if dyno.state == "running" else 0,
                "cpu_percent": self.runtime.cpu_percent(dyno.id)
                if dyno.state == "running" else None,
                "reason": notes.reason, "oneoff": bool(dyno.metadata.get("oneoff")),
                "output_tail": _tail(dyno.log_path)
                if state == DynoState.CRASHED or dyno.metadata.get("oneoff") else "",
            })
        self._forget_gone({dyno.id for dyno in listed})
        self._remove_idle_bridges({dyno.metadata["app"] for dyno in listed})
        failed, self.failed_oneoffs = self.failed_oneoffs, []
        unstarted, self.failed_starts = self.failed_starts, []
        self.api.put(f"{self._node_path()}/dynos", {"dynos": reported, "failed_oneoffs": failed,
                                                    "failed_starts": unstarted})
        # Read after the report: it counts the route change that took these dynos out.
        generation = self.events.routes_generation()
        for dyno_id in retiring:
            self._note(dyno_id, retire_after=generation)

    def _remove_idle_bridges(self, apps: set[str]) -> None:
        """An app's bridge goes with its last dyno (apps:destroy, a scale to nothing)."""
        if self.apps_with_dynos is None or self.apps_with_dynos - apps:
            self.runtime.remove_idle_bridges()
        self.apps_with_dynos = apps

    def _forget_gone(self, present: set[str]) -> None:
        """Notes and health checks of dynos that are gone (removed, or removed by someone
        else): the agent runs for months."""
        with self.lock:
            for table in (self.notes, self.checks):
                for dyno_id in [d for d in table if d not in present
                                and d not in self.stopping]:
                    del table[dyno_id]

    # ---- notes and logs ----------------------------------------------------------------

    def _notes(self, dyno_id: str) -> Notes:
        with self.lock:
            notes = self.notes.get(dyno_id)
            if notes is None:
                notes = _read_notes(self.settings.dynos_dir / dyno_id / "agent.json")
                self.notes[dyno_id] = notes
            return notes

    def _note(self, dyno_id: str, **changes: Any) -> None:
        notes = self._notes(dyno_id)
        with self.lock:
            for name, value in changes.items():
                setattr(notes, name, value)
            path = self.settings.dynos_dir / dyno_id / "agent.json"
            if path.parent.is_dir():
                safefs.write_atomic(path.parent, path.name, json.dumps(asdict(notes)).encode())

    def _ship_logs(self, dyno: DynoStatus, final: bool = False) -> None:
        log = DynoLog(dyno.log_path)
        with self.lock:
            try:
                offset, complete = log.read(final, MAX_SHIP_BYTES)
            except FileNotFoundError:
                return
            if not complete:
                return
            for line in complete.decode(errors="replace").splitlines():
                self._ship_line(dyno.metadata, line)
            log.set_offset(offset + len(complete))
            if not final:
                log.bound(self.settings.dyno_log_max_bytes)

    def _ship_line(self, meta: dict[str, str], line: str) -> None:
        name = dyno_name(key_of(meta))
        dropped = dropped_count(line)
        if dropped is not None:  # the dyno's monitor dropped output (paas/runtime/dynolog.py)
            self._log_dropped(meta, name, dropped)
            return
        line = outputlines.cut(line)
        if meta.get("attach"):
            self.events.client.xadd(run_stream(meta["app"], name), {"line": line},
                                    maxlen=20000, approximate=True)
            return
        if meta.get("build_id"):
            self.events.deploy_line(meta["build_id"], f"       {line}")
        self.events.app_log(meta["app"], f"app[{name}]", line)

    def _log_dropped(self, meta: dict[str, str], name: str, count: int) -> None:
        """Heroku's L10, in the app's log and wherever the dyno's output goes."""
        line = f"Error L10 (Log truncated): {count} bytes of output dropped"
        self._platform_log(key_of(meta), line)
        if meta.get("attach"):
            self.events.client.xadd(run_stream(meta["app"], name), {"line": line},
                                    maxlen=20000, approximate=True)
        if meta.get("build_id"):
            self.events.deploy_line(meta["build_id"], f"       {line}")

    def _platform_log(self, key: Key, line: str) -> None:
        self.events.app_log(key[0], f"paas[{dyno_name(key)}]", line)


def reported_state(noted: DynoState, *, exited: bool, exit_code: int | None, oneoff: bool,
                   leaving: bool) -> DynoState:
    """What the API is told of a dyno (`DYNO_TRANSITIONS`): the agent's notes, corrected by
    what runc sees now, which the notes may not know yet. `exited`: on its own, not on the
    platform's SIGTERM. A crash stays a crash. One that exited on its own crashed, unless it
    is a one-off that exited 0: that one is done (down); either stays so while it is cleaned
    up. A dyno the platform is taking out (`leaving`) is down."""
    if noted == DynoState.CRASHED:
        return noted
    if exited and noted in (DynoState.STARTING, DynoState.UP):
        return DynoState.DOWN if oneoff and exit_code == 0 else DynoState.CRASHED
    if leaving:
        return DynoState.DOWN
    return noted


def _host_memory_mb() -> int:
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    raise OSError("/proc/meminfo has no MemTotal")


def _console(key: Key) -> tuple[str, str]:
    """The streams a dyno's terminal is relayed through (paas/terminals.py)."""
    return run_stream(key[0], dyno_name(key)), terminals.input_stream(key[0], dyno_name(key))


def _read_notes(path: Path) -> Notes:
    try:
        raw = json.loads(safefs.read_file(path.parent, path.name) or b"")
    except (OSError, ValueError, safefs.UnsafePath):
        return Notes()
    known = Notes.__dataclass_fields__
    return Notes(**{k: v for k, v in raw.items() if k in known})


def _exit_code(log_path: Path) -> int | None:
    try:
        return int(safefs.read_file(log_path.parent, "exit-code") or b"")
    except (OSError, ValueError, safefs.UnsafePath):
        return None


def _tail(path: Path, lines: int = 40) -> str:
    data = DynoLog(path).tail(16384)  # a dyno's log can be large: never read it whole
    return "\n".join(data.decode(errors="replace").splitlines()[-lines:])


def main() -> None:
    settings = load()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    client = redis_clients.client(settings.redis_url, decode_responses=True)
    agent = Agent(settings, Runtime(settings), LayerStore(settings),
                  ApiClient(settings.api_url, settings.service_token_path.read_text().strip()),
                  RedisEvents(client, settings.log_lines))
    while not stop.is_set():
        try:
            agent.reconcile()
        except (PaasError, redis.RedisError, OSError) as error:
            print(f"agent: {error}", file=sys.stderr, flush=True)
        except Exception:  # e.g. a runc call timing out on a loaded machine: try again
            traceback.print_exc()
        stop.wait(settings.agent_interval)
    agent.pool.shutdown(wait=True)
    agent.stopper.shutdown(wait=True)


if __name__ == "__main__":
    main()
