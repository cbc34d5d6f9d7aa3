"""The runc agent: the scheduler backend that runs dynos on this host, one node
(`settings.node_name`). `python -m paas.runtime.agent` runs it (`__main__.py`).

    reconcile.py  the pass: desired dynos against runc's; `Agent`, the `Scheduler`
    health.py     boot: port accepts, app.json's HTTP checks, R10; memory kills (R15)
    crashes.py    crash counts and restart backoff, on disk
    stops.py      SIGTERM, grace, SIGKILL (R12), removal, on a pool of their own
    logship.py    dyno output and platform lines into the log, run and build streams
    notes.py      what the agent knows of each dyno, on disk; the one state change
    report.py     the dyno report (`reported_state`)
    node.py       the node's identity and capacity, its firewall table, idle bridges
    keys.py       `DynoKey`

Killed and started again, it adopts the running dynos: their state lives on disk and in runc
(the agent's notes in each dyno's `agent.json`, the crash counts in `crashes.json`), and a
per-dyno offset file says how much of each output log was already shipped."""

from __future__ import annotations

from paas.runtime.agent.crashes import Crash
from paas.runtime.agent.keys import DynoKey
from paas.runtime.agent.node import FIREWALL_CHECK_INTERVAL
from paas.runtime.agent.reconcile import Agent
from paas.runtime.agent.report import reported_state

__all__ = ["FIREWALL_CHECK_INTERVAL", "Agent", "Crash", "DynoKey", "reported_state"]
