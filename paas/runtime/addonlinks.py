"""Where add-on servers keep their files on a node, and which app networks they are on: read
by the dyno runtime too (an app bridge an add-on is linked to is not idle)."""

from __future__ import annotations

import json
from pathlib import Path

from paas import safefs
from paas.settings import Settings


def addons_dir(settings: Settings) -> Path:
    return settings.runtime_home / "addons"


def container_id(name: str) -> str:
    return f"addon-{name}"


def linked_slots(settings: Settings) -> set[int]:
    """The app slots some add-on server on this node is linked to (their bridges stay)."""
    root = addons_dir(settings)
    slots: set[int] = set()
    if not root.is_dir():
        return slots
    for path in root.iterdir():
        try:
            record = json.loads(safefs.read_file(path, "record.json") or b"")
        except (OSError, ValueError, safefs.UnsafePath):
            continue
        slots.update(int(link["slot"]) for link in record.get("links", []))
    return slots
