"""How things read on the page: an app's state, ages, durations, sizes. Pure functions."""

from __future__ import annotations

import time
from collections.abc import Iterable
from enum import StrEnum
from typing import Any


class AppState(StrEnum):
    """What the apps list says about an app, most pressing first."""

    MAINTENANCE = "maintenance"
    BUILDING = "building"
    CRASHED = "crashed"
    STARTING = "starting"
    RUNNING = "running"
    NO_DYNOS = "no dynos"


LIVE_BUILDS = ("pending", "building")


def app_state(maintenance: bool, current_release: int | None, dynos: Iterable[dict[str, Any]],
              latest_build_status: str | None) -> AppState:
    if maintenance:
        return AppState.MAINTENANCE
    if latest_build_status in LIVE_BUILDS:
        return AppState.BUILDING
    mine = [d for d in dynos if current_release is not None and d["release"] == current_release]
    states = {d["state"] for d in mine}
    if "up" in states:
        return AppState.RUNNING
    if "crashed" in states:
        return AppState.CRASHED
    if "starting" in states:
        return AppState.STARTING
    return AppState.NO_DYNOS


def ago(when: float | None, now: float | None = None) -> str:
    if not when:
        return "never"
    seconds = max(0, int((now if now is not None else time.time()) - when))
    return f"{span(seconds)} ago" if seconds >= 5 else "just now"


def span(seconds: float | None) -> str:
    """A duration as a person says it: 42s, 3m 5s, 2h 10m, 3d 4h."""
    if seconds is None:
        return "—"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60}m"
    return f"{s // 86400}d {s % 86400 // 3600}h"


def iso(when: float | None) -> str:
    if not when:
        return ""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))


def size(nbytes: int | None) -> str:
    if nbytes is None:
        return "—"
    value = float(nbytes)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


def short(digest_or_commit: str | None, n: int = 7) -> str:
    text = digest_or_commit or ""
    return text.split(":", 1)[-1][:n]


def ssh_remote(host: str, port: int, app: str) -> str | None:
    return f"ssh://git@{host}:{port}/{app}.git" if port else None


def memory_by_type(dynos: Iterable[dict[str, Any]]) -> dict[str, float]:
    """Memory in use per process type (MB, summed over its dynos), for the metrics page."""
    totals: dict[str, float] = {}
    for d in dynos:
        if d.get("state") in ("up", "starting"):
            used = totals.get(d["type"], 0.0) + float(d.get("memory_mb") or 0)
            totals[d["type"]] = round(used, 1)
    return dict(sorted(totals.items()))


def cpu_by_type(dynos: Iterable[dict[str, Any]]) -> dict[str, str]:
    """CPU in use per process type now (summed over its running dynos)."""
    totals: dict[str, float] = {}
    for d in dynos:
        if d.get("state") in ("up", "starting") and isinstance(d.get("cpu_percent"), int | float):
            totals[d["type"]] = totals.get(d["type"], 0.0) + d["cpu_percent"]
    return {t: f"{v:.1f}%" for t, v in sorted(totals.items())}


def cpu_of(dyno: dict[str, Any]) -> str:
    """A dyno's CPU use, if the agent reports it (the dynos issue adds it from the cgroup)."""
    for key in ("cpu_percent", "cpu"):
        value = dyno.get(key)
        if isinstance(value, int | float):
            return f"{value:.1f}%"
    return "—"


def ago_seconds(when: float | None, now: float | None = None) -> float | None:
    if not when:
        return None
    return max(0.0, (now if now is not None else time.time()) - when)


def certificate(entry: dict[str, Any] | None) -> str:
    """A domain's HTTPS, as the overview's domain list says it (`paas certs:auto`'s states)."""
    if entry is None:
        return ""
    state, expires = entry["state"], entry.get("expires_at")
    until = f", expires {time.strftime('%Y-%m-%d', time.gmtime(expires))}" if expires else ""
    if state == "issued":
        return f"HTTPS: certificate issued{until}"
    if state == "uploaded":
        return f"HTTPS: uploaded certificate{until}"
    if state == "failing":
        when = time.strftime("%H:%M:%S UTC", time.gmtime(entry["next_try_at"] or 0))
        return f"HTTPS: failing: {entry['message']} (next try {when})"
    if state == "pending":
        return f"HTTPS: certificate pending ({entry['message']})"
    return f"HTTP only: {entry['message']}"
