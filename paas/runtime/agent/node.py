"""The host as a node: its identity and capacity, its firewall table, its idle bridges."""

from __future__ import annotations

import sys
import threading

from paas.errors import PaasError
from paas.runtime import Runtime
from paas.settings import Settings
from paas.wire import NodeInfo

# How often the firewall table is checked: how long dynos may reach the host after something
# flushed the host's ruleset.
FIREWALL_CHECK_INTERVAL = 10.0
# A dyno size's memory is a limit, not what the dyno uses (most use a fraction of it), so by
# default a node offers this many times its memory: as on Dokku, 50 small apps fit a host
# whose memory is less than 50 limits.
OVERCOMMIT = 4


def node_info(settings: Settings) -> NodeInfo:
    return NodeInfo(memory_mb=settings.node_memory_mb or OVERCOMMIT * host_memory_mb(),
                    backend="runc", dyno_subnet=settings.dyno_subnet)


def host_memory_mb() -> int:
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    raise OSError("/proc/meminfo has no MemTotal")


def watch_firewall(runtime: Runtime, stop: threading.Event) -> None:
    """On a thread of its own, so that the dynos stay off the host while the API is down (the
    reconcile loop waits for it)."""
    while not stop.is_set():
        check_firewall(runtime)
        stop.wait(FIREWALL_CHECK_INTERVAL)


def check_firewall(runtime: Runtime) -> None:
    try:
        faults = runtime.repair_firewall()
    except PaasError as error:
        print(f"agent: cannot check the firewall table: {error}", file=sys.stderr, flush=True)
        return
    if faults:
        print(f"agent: the firewall table was not whole ({'; '.join(faults)}): repaired",
              file=sys.stderr, flush=True)


class IdleBridges:
    """An app's bridge goes with its last dyno on this node (apps:destroy, a scale to
    nothing, its dynos moved to another node)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.apps_with_dynos: set[str] | None = None  # at the last pass; None: not known yet

    def remove(self, apps: set[str]) -> None:
        if self.apps_with_dynos is None or self.apps_with_dynos - apps:
            self.runtime.remove_idle_bridges()
        self.apps_with_dynos = apps
