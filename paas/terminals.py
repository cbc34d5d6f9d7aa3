"""A one-off dyno's terminal (`paas run` from a terminal): what travels between the client,
the API and the dyno's console monitor.

- Client <-> API: a WebSocket. Binary frames are the terminal's bytes both ways; text frames
  are JSON: `{"resize": [rows, cols]}` from the client, `{"exit_code": N}` (then the close)
  or `{"error": "..."}` from the API.
- API <-> console monitor: Redis streams, so the API and the dyno need not share a host. The
  terminal's output goes to the one-off's run stream (`logs.run_stream`) as `{"data": b64}`
  entries (runc's own errors as `{"line": ...}`, the end as `{"end": code}`); keys, sizes and
  the hangup go to its input stream.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

LOST = 255  # the container's end could not be observed
INPUT_TTL = 3600
MAX_SIZE = 10000


def input_stream(app: str, name: str) -> str:
    return f"run-input:{app}:{name}"


def output_entry(data: bytes) -> dict[str, str]:
    return {"data": base64.b64encode(data).decode()}


def entry_bytes(fields: dict[Any, Any]) -> bytes | None:
    """A run stream entry's terminal bytes (output, or a line of runc's); None for the end."""
    fields = {_text(k): _text(v) for k, v in fields.items()}
    if "data" in fields:
        return base64.b64decode(fields["data"])
    if "line" in fields:
        return (fields["line"] + "\r\n").encode()
    return None


def entry_end(fields: dict[Any, Any]) -> tuple[bool, int | None]:
    """(is this the end, the exit code if known)."""
    fields = {_text(k): _text(v) for k, v in fields.items()}
    if "end" not in fields:
        return False, None
    end = fields["end"]
    return True, int(end) if end.lstrip("-").isdigit() else None


@dataclass(frozen=True)
class Input:
    data: bytes = b""
    size: tuple[int, int] | None = None
    hangup: bool = False


def keys_entry(data: bytes) -> dict[str, str]:
    return {"data": base64.b64encode(data).decode()}


def resize_entry(text: str) -> dict[str, str] | None:
    """A client's `{"resize": [rows, cols]}` as an input entry; None when it is not one."""
    try:
        rows, cols = json.loads(text)["resize"]
    except (ValueError, KeyError, TypeError):
        return None
    if not all(isinstance(n, int) and 0 < n <= MAX_SIZE for n in (rows, cols)):
        return None
    return {"size": f"{rows} {cols}"}


HANGUP_ENTRY = {"hangup": "1"}
ATTACHED_ENTRY = {"attached": "1"}


def parse_input(fields: dict[Any, Any]) -> Input:
    fields = {_text(k): _text(v) for k, v in fields.items()}
    if fields.get("hangup"):
        return Input(hangup=True)
    size = None
    if "size" in fields:
        rows, _, cols = fields["size"].partition(" ")
        size = (int(rows), int(cols))
    data = base64.b64decode(fields["data"]) if "data" in fields else b""
    return Input(data=data, size=size)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
