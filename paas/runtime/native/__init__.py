"""The runtime's native programs, compiled beside their source by `make setup` (gcc).

- `paas-dyno-monitor` (dyno-monitor.c): the monitor of a dyno without a terminal, a few
  hundred KB resident; `runc` runs detached under it and exits once the container runs.
"""

from __future__ import annotations

import os
from pathlib import Path

from paas.errors import Unavailable

DYNO_MONITOR = Path(__file__).with_name("paas-dyno-monitor")


def dyno_monitor() -> str:
    """The dyno monitor's path; Unavailable if it was not built."""
    if not os.access(DYNO_MONITOR, os.X_OK):
        raise Unavailable(f"the dyno monitor {DYNO_MONITOR} is not built: run `make setup` "
                          "(it compiles paas/runtime/native/dyno-monitor.c with gcc)")
    return str(DYNO_MONITOR)
