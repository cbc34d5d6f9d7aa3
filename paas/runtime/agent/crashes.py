"""Crash counts and restart backoff, kept on disk (`crashes.json`): a restarted agent goes on
counting, and backing off, where it was. Owned by the reconcile thread."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from paas.runtime.agent.keys import DynoKey
from paas.wire import DesiredDyno

CRASHES_FILE = "crashes.json"


@dataclass
class Crash:
    """A formation dyno's crashes since its release or its last restart (the generation)."""

    count: int = 0
    last: float = 0.0  # unix time of the last one
    generation: str = ""


class CrashCounts:
    def __init__(self, dynos_dir: Path, backoff: float, backoff_cap: float) -> None:
        self.path = dynos_dir / CRASHES_FILE
        self.backoff = backoff
        self.backoff_cap = backoff_cap
        self.crashes = _load(self.path)

    def get(self, key: DynoKey) -> Crash:
        return self.crashes.get(key, Crash())

    def restarts(self, key: DynoKey) -> int:
        return self.get(key).count

    def count(self, key: DynoKey, generation: str, now: float) -> None:
        crash = self.crashes.setdefault(key, Crash(generation=generation))
        crash.count += 1
        crash.last = now
        self._save()

    def may_start(self, key: DynoKey, now: float) -> bool:
        """At once after a first crash, then after the backoff, doubling up to the cap."""
        crash = self.crashes.get(key)
        if crash is None or crash.count <= 1:
            return True
        delay = min(self.backoff_cap, self.backoff * 2 ** (crash.count - 2))
        return now - crash.last >= delay

    def forget_stale(self, wanted: dict[DynoKey, DesiredDyno]) -> None:
        """A new release (a new key), a restart or a resize (a new generation) starts the
        count and the backoff over; a dyno no longer wanted is forgotten."""
        stale = [key for key, crash in self.crashes.items()
                 if key not in wanted or crash.generation != wanted[key].generation]
        for key in stale:
            del self.crashes[key]
        if stale:
            self._save()

    def _save(self) -> None:
        rows = [{"app": k.app, "release": k.release, "type": k.type, "index": k.number,
                 **asdict(c)} for k, c in sorted(self.crashes.items())]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(rows))
        tmp.replace(self.path)


def _load(path: Path) -> dict[DynoKey, Crash]:
    try:
        rows = json.loads(path.read_text())
        return {DynoKey(r["app"], int(r["release"]), r["type"], int(r["index"])):
                Crash(int(r["count"]), float(r["last"]), str(r["generation"])) for r in rows}
    except (OSError, ValueError, KeyError, TypeError):
        return {}
