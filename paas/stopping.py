"""Stopping a role's loop at once: a loop that sleeps on its own wake event (the agent's, the
router's) is woken when the role's stop event is set, whoever sets it (a signal handler, or
`paas/roles.py` stopping every role of its process)."""

from __future__ import annotations

import threading


def wake_on(stop: threading.Event, wake: threading.Event) -> None:
    """Sets `wake` once `stop` is set (a daemon thread waits for it)."""
    def wait() -> None:
        stop.wait()
        wake.set()

    threading.Thread(target=wait, name="wake-on-stop", daemon=True).start()
