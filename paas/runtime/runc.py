"""Thin wrappers around the runc command line."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from paas.errors import Unavailable


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
        result = self.call("list", "--format", "json")
        if result.returncode != 0:
            raise Unavailable(f"runc list failed: {result.stderr.strip()}")
        entries = json.loads(result.stdout or "null") or []
        return {entry["id"]: entry["status"] for entry in entries}

    def state(self, container_id: str) -> str | None:
        result = self.call("state", container_id)
        if result.returncode != 0:
            return None
        return json.loads(result.stdout).get("status")

    def kill_all(self, container_id: str, signal: str) -> bool:
        return self.call("kill", "--all", container_id, signal).returncode == 0

    def delete(self, container_id: str) -> None:
        self.call("delete", "--force", container_id)
