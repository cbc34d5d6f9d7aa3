"""A one-off dyno's terminal (`paas run` from a terminal): what travels between the client,
the API and the dyno's console monitor.

- Client <-> API: a WebSocket. Binary frames are the terminal's bytes both ways; text frames
  are JSON: `{"resize": [rows, cols]}` from the client, `{"exit_code": N}` (then the close)
  or `{"error": "..."}` from the API.
- API <-> console monitor: Redis streams (paas/streams.py), so the API and the dyno need not
  share a host. The terminal's output goes to the one-off's run stream as `TerminalOutput`
  entries (runc's own errors as `OutputLine`s, then the agent's `RunEnd`); keys, window sizes
  and the hangup go to its input stream.
"""

from __future__ import annotations

import json

from paas.streams import OutputLine, TerminalOutput, WindowSize

LOST = 255  # the container's end could not be observed
MAX_SIZE = 10000


def screen_bytes(entry: OutputLine | TerminalOutput) -> bytes:
    """What a run stream entry shows on the client's terminal."""
    if isinstance(entry, TerminalOutput):
        return entry.data
    return (entry.text + "\r\n").encode()


def window_size(text: str) -> WindowSize | None:
    """A client's `{"resize": [rows, cols]}`; None when it is not one."""
    try:
        rows, cols = json.loads(text)["resize"]
    except (ValueError, KeyError, TypeError):
        return None
    if not all(isinstance(n, int) and 0 < n <= MAX_SIZE for n in (rows, cols)):
        return None
    return WindowSize(rows, cols)
