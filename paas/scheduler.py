"""The scheduler interface: how a backend that runs dynos meets the API.

A scheduler is a pull reconciler. Each pass, for each node it runs dynos on, it reads what
the API assigned to that node (`DesiredState`), makes the node match (starting, health-checking,
restarting, retiring dynos; shipping their output to the log streams, `paas/streams.py`), and
reports every dyno the node has (`NodeReport`). The API never calls a scheduler: it only
answers, so nothing in the API's domain code knows which backend runs.

    ControlPlane   the API as a scheduler sees it (`ApiControlPlane`: its internal routes)
    Scheduler      a backend: the runc agent on one host (`paas/runtime/agent/`), the Docker
                   Swarm backend next (one node per Swarm node, a service per process type)
"""

from __future__ import annotations

import sys
import threading
import traceback
from collections.abc import Callable
from typing import Protocol
from urllib.parse import quote

from paas.client import ApiClient
from paas.errors import NotFound, PaasError
from paas.wire import DesiredState, NodeInfo, NodeReport


class ControlPlane(Protocol):
    def register(self, node: str, info: NodeInfo) -> None:
        """Announces a node and its capacity (again after a restart: a heartbeat too)."""
        ...

    def desired(self, node: str) -> DesiredState:
        """What `node` should run; NotFound when the API does not know the node."""
        ...

    def report(self, node: str, report: NodeReport) -> None:
        """Every dyno `node` has now, replacing its last report."""
        ...


class Scheduler(Protocol):
    def nodes(self) -> dict[str, NodeInfo]:
        """The nodes this backend runs dynos on, by name."""
        ...

    def reconcile(self, node: str, desired: DesiredState) -> NodeReport:
        """One pass: make `node` run `desired`; what it runs now."""
        ...

    def reported(self, node: str, report: NodeReport) -> None:
        """The API has `report` (what follows from it, a route change, has happened)."""
        ...


class ApiControlPlane:
    """`ControlPlane` over the API's `/v1/internal/nodes` routes, with the service token."""

    def __init__(self, api: ApiClient) -> None:
        self.api = api

    def register(self, node: str, info: NodeInfo) -> None:
        self.api.put(f"/v1/internal/nodes/{quote(node, safe='')}", info.to_json())

    def desired(self, node: str) -> DesiredState:
        return DesiredState.from_json(
            self.api.get(f"/v1/internal/nodes/{quote(node, safe='')}/desired"))

    def report(self, node: str, report: NodeReport) -> None:
        self.api.put(f"/v1/internal/nodes/{quote(node, safe='')}/dynos", report.to_json())


def reconcile_all(scheduler: Scheduler, control: ControlPlane,
                  registered: set[str]) -> None:
    """One pass over every node of `scheduler`; `registered` remembers which nodes the API
    knows (a node the API forgot, after its database was replaced, registers again)."""
    for node, info in scheduler.nodes().items():
        if node not in registered:
            control.register(node, info)
            registered.add(node)
        try:
            desired = control.desired(node)
        except NotFound:
            registered.discard(node)
            continue
        report = scheduler.reconcile(node, desired)
        control.report(node, report)
        scheduler.reported(node, report)


def run(scheduler: Scheduler, control: ControlPlane, stop: threading.Event, interval: float,
        on_error: Callable[[BaseException], None] | None = None,
        wake: threading.Event | None = None) -> None:
    """Reconciles at once whenever `wake` is set (what the API wants changed, a dyno started
    listening: `paas/notify.py`), else every `interval` seconds, until `stop` is set (set
    `wake` too, to stop at once); an error (the API restarting, a runc call timing out on a
    loaded machine) is logged and the next pass tries again."""
    registered: set[str] = set()
    while not stop.is_set():
        if wake is not None:  # cleared before the pass: what happens during it makes another
            wake.clear()
        try:
            reconcile_all(scheduler, control, registered)
        except Exception as error:  # a scheduler runs for months: the next pass tries again
            (on_error or _print_error)(error)
        (wake or stop).wait(interval)


def _print_error(error: BaseException) -> None:
    if isinstance(error, PaasError | OSError):
        print(f"scheduler: {error}", file=sys.stderr, flush=True)
    else:  # not foreseen: the whole story
        traceback.print_exception(error)
