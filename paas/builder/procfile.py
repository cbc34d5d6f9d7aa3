"""The Procfile: one `name: command` line per process type, as on Heroku."""

from __future__ import annotations

import re

from paas.errors import Invalid

MAX_BYTES = 64 * 1024
MAX_TYPES = 100
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,63}$")
_HINT = "Each line must look like `web: python app.py` (a process type name, a colon, a command)."


def parse_procfile(text: str) -> dict[str, str]:
    if len(text.encode()) > MAX_BYTES:
        raise Invalid(
            f"Procfile is larger than {MAX_BYTES // 1024} KiB; keep one line per process type."
        )
    processes: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, command = _parse_line(line, number)
        if name in processes:
            raise Invalid(
                f"Procfile line {number}: process type {name!r} is defined twice; "
                "remove one of the lines."
            )
        processes[name] = command
        if len(processes) > MAX_TYPES:
            raise Invalid(f"Procfile defines more than {MAX_TYPES} process types; remove some.")
    return processes


def _parse_line(line: str, number: int) -> tuple[str, str]:
    name, colon, command = line.partition(":")
    name, command = name.strip(), command.strip()
    if not colon:
        raise Invalid(f"Procfile line {number}: no colon in {line!r}. {_HINT}")
    if not _NAME.match(name):
        raise Invalid(
            f"Procfile line {number}: invalid process type name {name!r}; use 1 to 63 letters, "
            f"digits, '-' or '_'. {_HINT}"
        )
    if not command:
        raise Invalid(f"Procfile line {number}: process type {name!r} has no command. {_HINT}")
    return name, command
