"""The reconcile pass: the runc backend of `paas.scheduler` for the one node it runs on.

Each pass compares what the API assigned to this node (`DesiredState`) with what runc runs,
starts what is missing, watches what runs (boot and health, memory kills, crashes with
backoff, one-offs' exits), retires what is no longer wanted and reports every dyno.

Who owns what: everything here is the reconcile thread's (the notes, the crash counts, the
health checks' futures, the failed starts, the apps' policies); a dyno whose stop has begun is
its stop's (`stops.py`) until it is gone, which the pass learns from `Stops.under_way`, the
only table two threads share. No lock is held over I/O."""

from __future__ import annotations

import dataclasses
import secrets
import threading
import time

from paas import streams
from paas.errors import Permanent
from paas.logs import RedisEvents
from paas.runtime import DynoSpec, DynoStatus, RunState, Runtime
from paas.runtime.addonservers import AddonServers
from paas.runtime.agent.addons import AddonKeeper
from paas.runtime.agent.crashes import CrashCounts
from paas.runtime.agent.exits import ExitWatch
from paas.runtime.agent.health import Boot, BootChecks, memory_kill_line
from paas.runtime.agent.keys import DynoKey
from paas.runtime.agent.logship import LogShipper
from paas.runtime.agent.node import IdleBridges, node_info
from paas.runtime.agent.notes import NoteBook
from paas.runtime.agent.report import dyno_report
from paas.runtime.agent.stops import StopOrder, Stops
from paas.settings import Settings
from paas.slugs.layers import LayerStore
from paas.wire import (
    AppPolicy,
    DesiredDyno,
    DesiredState,
    DynoState,
    FailedOneOff,
    FailedStart,
    NodeInfo,
    NodeReport,
)

# A retiring web dyno is stopped anyway after this long without the router's acknowledgement.
ROUTES_WAIT_MAX = 30.0

Wanted = dict[DynoKey, DesiredDyno]


class Agent:
    """A `paas.scheduler.Scheduler` of one node: this host, `settings.node_name`.

    A web dyno that is no longer wanted keeps running until the router has applied a route
    table without it (`notify.routes_applied` >= the generation after it was reported down),
    then gets SIGTERM: a deploy, a restart, a scale-down or a move to another node drops no
    request. The router's acknowledgement wakes the agent, so that SIGTERM follows at once."""

    def __init__(self, settings: Settings, runtime: Runtime, store: LayerStore,
                 events: RedisEvents) -> None:
        self.settings = settings
        self.runtime = runtime
        self.store = store
        self.events = events
        self.notes = NoteBook(settings.dynos_dir)
        self.crashes = CrashCounts(settings.dynos_dir, settings.restart_backoff,
                                   settings.restart_backoff_cap)
        self.log = LogShipper(events, settings.dyno_log_max_bytes)
        # Set to make the next pass now (`paas.scheduler.run`): by a dyno's boot check that
        # ended, and by the API's and the router's notifications (`__main__`, paas/notify.py).
        self.wake = threading.Event()
        self.health = BootChecks(self.notes, self.log, settings.boot_timeout, self.wake)
        self.stops = Stops(runtime, self.log, self.wake)
        self.exits = ExitWatch(self.wake)
        self.bridges = IdleBridges(runtime)
        self.addons = AddonKeeper(AddonServers(settings, runtime), settings.stop_grace)
        self.apps: dict[str, AppPolicy] = {}
        self.failed_oneoffs: list[FailedOneOff] = []
        # Formation dynos that could not start (a platform error): the API fails their release
        # at once when the error is Permanent, else keeps the reason for the release's deadline.
        self.failed_starts: list[FailedStart] = []
        # Reported down as no longer wanted in the last report: once the API has it, the
        # route generation that takes them out is known.
        self.reported_leaving: list[str] = []

    # ---- the Scheduler -----------------------------------------------------------------

    def nodes(self) -> dict[str, NodeInfo]:
        return {self.settings.node_name: node_info(self.settings)}

    def reconcile(self, node: str, desired: DesiredState) -> NodeReport:
        assert node == self.settings.node_name, node
        self.apps = dict(desired.apps)
        # First: a new release's dynos find the add-ons they are given attached.
        addons = self.addons.reconcile(tuple(a for a in desired.addons if a.node == node))
        # Only what the API assigned to this node, even from a control plane that sends more.
        wanted = {DynoKey.wanted(dyno): dyno for dyno in desired.dynos if dyno.node == node}
        self.crashes.forget_stale(wanted)
        # Before listing: a stop that ends while this pass runs removes its dyno from disk and
        # from `under_way`, and must not make it look like a dyno to act on.
        stopping = self.stops.under_way()
        actual = self.runtime.list_dynos()
        self._watch_exits(actual, stopping)
        replaced = self._replacements_up(actual, wanted)
        running: set[DynoKey] = set()
        for dyno in actual:
            if dyno.id not in stopping and self._act_on(dyno, wanted, replaced):
                running.add(DynoKey.of(dyno.metadata))
        present = {DynoKey.of(dyno.metadata) for dyno in actual}
        for key, spec in wanted.items():
            if self._should_start(key, spec, running, present):
                self._start(key, spec)
        return dataclasses.replace(self._report(), addons=addons)

    def reported(self, node: str, report: NodeReport) -> None:
        # Read once the API has the report: it counts the route change that took them out.
        if not self.reported_leaving:
            return
        generation = self.events.routes_generation()
        for dyno_id in self.reported_leaving:
            if dyno_id in self.notes:
                self.notes.update(dyno_id, retire_after=generation)
        self.reported_leaving = []

    def shutdown(self, cancel: bool = False) -> None:
        self.health.shutdown()
        self.stops.shutdown(cancel)
        self.exits.shutdown()

    def _watch_exits(self, actual: list[DynoStatus], stopping: set[str]) -> None:
        """The running dynos' monitors, so that an exit wakes the next pass (a stop's own
        end wakes it already)."""
        monitors = {}
        for dyno in actual:
            if dyno.state == RunState.RUNNING and dyno.id not in stopping:
                pid = self.runtime.monitor_pid(dyno.id)
                if pid is not None:
                    monitors[dyno.id] = pid
        self.exits.watch(monitors)

    # ---- one dyno ----------------------------------------------------------------------

    def _act_on(self, dyno: DynoStatus, wanted: Wanted, replaced: set[DynoKey]) -> bool:
        """Ships the dyno's output and does what it needs; True when it runs as wanted."""
        key = DynoKey.of(dyno.metadata)
        self.log.ship(dyno, final=dyno.state == RunState.EXITED)
        spec = wanted.get(key)
        if spec is not None and not _same_generation(dyno, spec):
            if dyno.state == RunState.RUNNING and key not in replaced:
                return False  # serves until its replacement is up
            spec = None
        if spec is None:
            self._retire(dyno, key)
        elif spec.oneoff:
            self._watch_oneoff(dyno, key)
        elif dyno.state == RunState.EXITED:
            self._crashed(dyno, key)
        else:
            self._keep(dyno)
            self._watch(dyno, key, spec)
            return True
        return False

    def _should_start(self, key: DynoKey, spec: DesiredDyno, running: set[DynoKey],
                      present: set[DynoKey]) -> bool:
        if spec.oneoff:  # never restarted
            return key not in present
        return key not in running and self.crashes.may_start(key, time.time())

    def _replacements_up(self, actual: list[DynoStatus], wanted: Wanted) -> set[DynoKey]:
        """Keys whose dyno of the wanted generation is up."""
        found = set()
        for dyno in actual:
            key = DynoKey.of(dyno.metadata)
            spec = wanted.get(key)
            if (spec is not None and dyno.state == RunState.RUNNING
                    and _same_generation(dyno, spec)
                    and self.notes.of(dyno.id).state == DynoState.UP):
                found.add(key)
        return found

    # ---- starting ----------------------------------------------------------------------

    def _start(self, key: DynoKey, desired: DesiredDyno) -> None:
        try:
            spec = self._dyno_spec(key, desired)
            self.log.platform(key, f"Starting process with command `{desired.command[-1]}`")
            if desired.build_id:
                self.log.release_phase(desired.build_id, "-----> Running release command: "
                                       f"{desired.command[-1]}")
            status = self.runtime.start_dyno(spec)
        except Exception as error:  # a dyno that cannot start is a crash, not an agent failure
            self._failed_start(key, desired, error)
            return
        self.notes.change_state(status.id,
                                DynoState.UP if desired.oneoff else DynoState.STARTING)
        if not desired.oneoff and status.state == RunState.RUNNING:
            self._watch(status, key, desired)  # its boot check begins now, not next pass

    def _dyno_spec(self, key: DynoKey, desired: DesiredDyno) -> DynoSpec:
        layers = [self.store.unpacked(d, desired.uid) for d in reversed(desired.layers)]
        console = _console(key)
        return DynoSpec(
            id=f"{key.app}-{secrets.token_hex(5)}", app=key.app, app_index=desired.slot,
            uid=desired.uid, command=list(desired.command), env=dict(desired.env),
            layers=layers, memory_mb=desired.memory_mb, pids_limit=desired.pids,
            disk_mb=desired.disk_mb, cpu_shares=desired.cpu_shares,
            metadata=start_metadata(key, desired),
            console=console if desired.tty else None,
            stdin=console[1] if desired.attach and not desired.tty else None)

    def _failed_start(self, key: DynoKey, desired: DesiredDyno, error: Exception) -> None:
        self.log.platform(key, f"Error starting {key.name} (platform error): {error}")
        if desired.oneoff:
            self.failed_oneoffs.append(FailedOneOff(
                app=key.app, type=key.type, index=key.number,
                error=f"the dyno could not start: {error}"))
        else:
            self.failed_starts.append(FailedStart(
                app=key.app, release=key.release, type=key.type, index=key.number,
                error=str(error) or type(error).__name__,
                permanent=isinstance(error, Permanent)))
        self.crashes.count(key, desired.generation, time.time())

    # ---- watching ----------------------------------------------------------------------

    def _watch(self, dyno: DynoStatus, key: DynoKey, desired: DesiredDyno) -> None:
        self._check_memory(dyno, key)
        if self.notes.of(dyno.id).state != DynoState.STARTING:
            return
        verdict = self.health.verdict(dyno, key, desired)
        if verdict.boot == Boot.UP:
            self.notes.change_state(dyno.id, DynoState.UP)
            self.log.platform(key, "State changed from starting to up")
        elif verdict.boot == Boot.FAILED:
            self._fail_boot(dyno, key, verdict.reason)

    def _fail_boot(self, dyno: DynoStatus, key: DynoKey, reason: str) -> None:
        self.log.platform(key, reason)
        self.log.platform(key, "Stopping process with SIGKILL")
        self.log.platform(key, "State changed from starting to crashed")
        self.notes.change_state(dyno.id, DynoState.CRASHED, reason=reason)
        self.crashes.count(key, dyno.metadata.get("generation", ""), time.time())
        self._stop(dyno, key, grace=0)

    def _check_memory(self, dyno: DynoStatus, key: DynoKey) -> None:
        kills = self.runtime.oom_kills(dyno.id)
        if kills > self.notes.of(dyno.id).oom_kills:
            self.log.platform(key, memory_kill_line(dyno))
            self.notes.update(dyno.id, oom_kills=kills)

    def _crashed(self, dyno: DynoStatus, key: DynoKey) -> None:
        noted = self.notes.of(dyno.id).state
        if noted == DynoState.CRASHED:
            # Reported as crashed already: it stays, and `paas ps` shows it crashed, until its
            # restart is due (the same pass starts that); then it is cleaned up.
            if self.crashes.may_start(key, time.time()):
                self._stop(dyno, key)
            return
        self._check_memory(dyno, key)
        self.log.platform(key, f"Process exited with status {dyno.exit_code}")
        self.log.platform(key, f"State changed from {noted} to crashed")
        self.notes.change_state(dyno.id, DynoState.CRASHED, finished=True)
        self.crashes.count(key, dyno.metadata.get("generation", ""), time.time())

    def _watch_oneoff(self, dyno: DynoStatus, key: DynoKey) -> None:
        if dyno.state != RunState.EXITED:
            self._check_memory(dyno, key)
            return
        if self.notes.of(dyno.id).finished:
            return
        self._check_memory(dyno, key)
        code = dyno.exit_code
        self.log.platform(key, f"Process exited with status {code}")
        self.log.platform(key, f"State changed from up to {'complete' if code == 0 else 'crashed'}")
        self.log.end_oneoff(dyno, code)
        self.notes.change_state(dyno.id, DynoState.DOWN if code == 0 else DynoState.CRASHED,
                                finished=True)

    # ---- retiring ----------------------------------------------------------------------

    def _retire(self, dyno: DynoStatus, key: DynoKey) -> None:
        """A dyno no longer wanted. A running web dyno is first reported down, and stopped
        once the router applied a table without it."""
        if dyno.state == RunState.EXITED or key.type != "web":
            self._stop(dyno, key)
            return
        notes = self.notes.of(dyno.id)
        if not notes.retiring_since:
            self.notes.update(dyno.id, retiring_since=time.time())
            return
        waited = time.time() - notes.retiring_since
        if notes.retire_after >= 0 and (self.events.routes_applied() >= notes.retire_after
                                        or waited > ROUTES_WAIT_MAX):
            self._stop(dyno, key)

    def _keep(self, dyno: DynoStatus) -> None:
        """A retiring dyno wanted again (scaled down, then up before it was stopped) serves
        on; else it would stay `down` and, counted as running, never be replaced."""
        if self.notes.of(dyno.id).retiring_since:
            self.notes.update(dyno.id, retiring_since=0.0, retire_after=-1)

    def _stop(self, dyno: DynoStatus, key: DynoKey, grace: float | None = None) -> None:
        if dyno.state == RunState.RUNNING:
            self.notes.update(dyno.id, stopped=True)
        notes = self.notes.of(dyno.id)
        self.stops.begin(StopOrder(
            dyno=dyno, key=key, grace=self._grace(key.app) if grace is None else grace,
            end_oneoff=bool(dyno.metadata.get("oneoff")) and not notes.finished,
            logged_oom_kills=notes.oom_kills))

    def _grace(self, app: str) -> float:
        policy = self.apps.get(app)
        if policy is None or policy.stop_grace is None:
            return self.settings.stop_grace
        return policy.stop_grace

    # ---- reporting ---------------------------------------------------------------------

    def _report(self) -> NodeReport:
        stopping = self.stops.under_way()
        listed = self.runtime.list_dynos()
        reports = []
        self.reported_leaving = []
        for dyno in listed:
            notes = self.notes.of(dyno.id)
            if notes.retiring_since and notes.retire_after < 0:
                self.reported_leaving.append(dyno.id)
            reports.append(dyno_report(
                dyno, notes, stopping=dyno.id in stopping,
                restarts=self.crashes.restarts(DynoKey.of(dyno.metadata)),
                runtime=self.runtime, default_port=self.settings.dyno_port))
        present = {dyno.id for dyno in listed}
        self.notes.forget_all_but(present | stopping)
        self.health.forget_all_but(present)
        self.bridges.remove({dyno.metadata["app"] for dyno in listed})
        failed, self.failed_oneoffs = self.failed_oneoffs, []
        unstarted, self.failed_starts = self.failed_starts, []
        return NodeReport(dynos=tuple(reports), failed_oneoffs=tuple(failed),
                          failed_starts=tuple(unstarted))


def start_metadata(key: DynoKey, desired: DesiredDyno) -> dict[str, str]:
    """What a dyno carries in its record: how a restarted agent knows it again."""
    return {"app": key.app, "release": str(key.release), "type": key.type,
            "index": str(key.number), "port": str(desired.port),
            "generation": desired.generation, "oneoff": "1" if desired.oneoff else "",
            "attach": "1" if desired.attach else "", "tty": "1" if desired.tty else "",
            "build_id": desired.build_id or "", "memory_mb": str(desired.memory_mb)}


def _same_generation(dyno: DynoStatus, spec: DesiredDyno) -> bool:
    """A resize or a ps:restart changes a dyno's generation: the old one is replaced."""
    return dyno.metadata.get("generation", "") == spec.generation


def _console(key: DynoKey) -> tuple[str, str]:
    """The streams a dyno's terminal is relayed through (paas/streams.py)."""
    return (streams.run_stream(key.app, key.name).key,
            streams.input_stream(key.app, key.name).key)
