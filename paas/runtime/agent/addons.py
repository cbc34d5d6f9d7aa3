"""The agent's part for add-on servers: each pass, before the dynos (a release's dynos must
find the database they are given attached), it makes this node's add-on servers match what
the API wants and reports each.

Replacing a server (a new generation: a plan change, rotated credentials) is stop-first:
the old server is gone, and its data lock free, before the new one starts. A server that
exited on its own is reported crashed and started again with a backoff. A server no longer
wanted is stopped, its data kept; a destroyed add-on's data is deleted."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from dataclasses import dataclass

from paas.builder.disk import DiskError
from paas.errors import PaasError
from paas.runtime.addonservers import AddonServers, ServerStatus
from paas.wire import AddonReport, AddonServerState, DesiredAddon

PG_ISREADY = "/usr/lib/postgresql/15/bin/pg_isready"
STOP_SIGNAL = {"postgres": "INT", "redis": "TERM"}  # Postgres's fast shutdown; Redis saves
BACKOFF_CAP = 60.0


@dataclass
class Trouble:
    error: str
    failures: int
    retry_at: float


class AddonKeeper:
    def __init__(self, servers: AddonServers, stop_grace: float) -> None:
        self.servers = servers
        self.stop_grace = stop_grace
        self.trouble: dict[str, Trouble] = {}

    def reconcile(self, desired: tuple[DesiredAddon, ...]) -> tuple[AddonReport, ...]:
        actual = self.servers.list()
        reports = []
        for addon in desired:
            try:
                reports.append(self._one(addon, actual.get(addon.name)))
            except (PaasError, OSError, DiskError) as error:  # one add-on's, not the node's
                reports.append(self._failed(addon, str(error)))
        wanted = {addon.name for addon in desired}
        for name in set(actual) - wanted:
            self._log(f"{name}: no longer wanted on this node: stopping its server (data kept)")
            self.servers.remove_server(name, self.stop_grace)
        return tuple(reports)

    def _one(self, addon: DesiredAddon, status: ServerStatus | None) -> AddonReport:
        if addon.destroyed:
            self.servers.destroy(addon.name)
            self.trouble.pop(addon.name, None)
            return AddonReport(name=addon.name, generation=addon.generation,
                               state=AddonServerState.REMOVED)
        if status is not None and status.running and status.generation != addon.generation:
            self._log(f"{addon.name}: replacing its server (stop first)")
            self.servers.remove_server(addon.name, self.stop_grace, STOP_SIGNAL[addon.service])
            status = None
        if status is not None and not status.running:
            tail = self.servers.output_tail(addon.name)
            first = addon.name not in self.trouble
            self._note_failure(addon, f"the server exited with status {status.exit_code}: "
                                      f"{tail[-500:] or 'no output'}")
            self.servers.remove_server(addon.name)
            if first:  # reported crashed once before it is started again
                return self._failed(addon, self.trouble[addon.name].error)
            status = None
        if status is None:
            trouble = self.trouble.get(addon.name)
            if trouble is not None and time.time() < trouble.retry_at:
                return self._failed(addon, trouble.error)
            self._log(f"{addon.name}: starting its {addon.service} server")
            status = self.servers.start(addon)
        else:
            self.servers.sync_links(addon.name, addon.links)
        ready = status.running and is_ready(addon)
        if ready:
            self.trouble.pop(addon.name, None)
        return AddonReport(
            name=addon.name, generation=addon.generation,
            state=AddonServerState.UP if ready else AddonServerState.STARTING,
            started_at=status.started_at, memory_mb=self.servers.memory_mb(addon.name))

    def _note_failure(self, addon: DesiredAddon, error: str) -> None:
        failures = self.trouble[addon.name].failures + 1 if addon.name in self.trouble else 1
        delay = min(2.0 ** (failures - 1), BACKOFF_CAP)
        self.trouble[addon.name] = Trouble(error, failures, time.time() + delay)
        self._log(f"{addon.name}: {error}")

    def _failed(self, addon: DesiredAddon, error: str) -> AddonReport:
        if addon.name not in self.trouble or self.trouble[addon.name].error != error:
            self._note_failure(addon, error)
        return AddonReport(name=addon.name, generation=addon.generation,
                           state=AddonServerState.CRASHED, error=error)

    def _log(self, line: str) -> None:
        print(f"agent: add-on {line}", file=sys.stderr, flush=True)


def is_ready(addon: DesiredAddon) -> bool:
    """The server answers on its first link (the owning app's network, which the host
    reaches): Postgres accepts connections (not "starting up"), Redis is not loading."""
    if not addon.links:
        return False
    address = addon.links[0].ip
    if addon.service == "postgres":
        done = subprocess.run([PG_ISREADY, "-q", "-h", address, "-p", str(addon.port),
                               "-t", "1"], capture_output=True, check=False)
        return done.returncode == 0
    try:
        with socket.create_connection((address, addon.port), timeout=1) as conn:
            conn.sendall(b"PING\r\n")
            answer = conn.recv(64)
    except OSError:
        return False
    return answer.startswith((b"+PONG", b"-NOAUTH"))
