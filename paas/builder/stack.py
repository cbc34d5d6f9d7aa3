"""The stack's identity: what the build and run containers share read-only from the host."""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import subprocess
from pathlib import Path

STACK_PYTHON = "/usr/bin/python3"


@functools.cache
def stack_id() -> str:
    """A short digest that changes when the stack is upgraded (OS, libc, Python, machine)."""
    parts = [
        _read("/etc/debian_version"),
        _os_release_version(),
        os.confstr("CS_GNU_LIBC_VERSION") or "",
        _python_version(),
        platform.machine(),
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def _os_release_version() -> str:
    lines = _read("/etc/os-release").splitlines()
    return " ".join(line for line in lines if line.startswith(("ID=", "VERSION_ID=")))


def _python_version() -> str:
    try:
        done = subprocess.run(
            [STACK_PYTHON, "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except OSError:
        return "no python"
    return (done.stdout + done.stderr).strip()
