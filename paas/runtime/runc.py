"""Thin wrappers around the runc command line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from paas.errors import Unavailable

# `runc list` (1.1) reads the root directory, then stats each entry, and fails outright when a
# container was deleted in between (another process's `runc delete`): listing again is right.
LIST_ATTEMPTS = 20


def runc_binary() -> str:
    found = shutil.which("runc") or next(
        (p for p in ("/usr/sbin/runc", "/usr/bin/runc") if Path(p).exists()), None
    )
    if not found:
        raise Unavailable("runc is not installed")
    return found


class Runc:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.binary = runc_binary()

    def base(self) -> list[str]:
        return [self.binary, "--root", str(self.root)]

    def call(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.base(), *args], capture_output=True, text=True, check=False, timeout=timeout
        )

    def states(self) -> dict[str, str]:
        """Container id -> runc status ("created", "running", "paused", "stopped")."""
        if not self.root.is_dir():
            return {}
        for _ in range(LIST_ATTEMPTS):
            result = self.call("list", "--format", "json")
            if result.returncode == 0 or not self._vanished_while_listing(result.stderr):
                break
        if result.returncode != 0:
            raise Unavailable(f"runc list failed: {result.stderr.strip()}")
        entries = json.loads(result.stdout or "null") or []
        return {entry["id"]: entry["status"] for entry in entries}

    def _vanished_while_listing(self, stderr: str) -> bool:
        return (f"stat {os.path.abspath(self.root)}/" in stderr
                and "no such file or directory" in stderr)

    def state(self, container_id: str) -> str | None:
        result = self.call("state", container_id)
        if result.returncode != 0:
            return None
        return json.loads(result.stdout).get("status")

    def kill_all(self, container_id: str, signal: str) -> bool:
        return self.call("kill", "--all", container_id, signal).returncode == 0

    def delete(self, container_id: str) -> None:
        self.call("delete", "--force", container_id)
