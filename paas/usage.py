"""Memory and CPU per process type: one point a minute for the last hour, per app, in Redis
(`usage:<app>`, a hash of process type -> JSON list of at most 60 points). The API records
them from the agent's dyno reports (the highest figure seen in each minute); the dashboard's
metrics page charts them. Rebuildable: losing them loses only history."""

from __future__ import annotations

import json
import time
from typing import Any

import redis

KEEP_POINTS = 60
KEEP_SECONDS = 2 * 3600
RUNNING = ("up", "starting")

Point = dict[str, float]


def key(app: str) -> str:
    return f"usage:{app}"


def totals(reported: list[dict[str, Any]]) -> dict[str, dict[str, Point]]:
    """app -> process type -> summed memory (MB) and CPU (%) of its running formation dynos."""
    found: dict[str, dict[str, Point]] = {}
    for dyno in reported:
        if dyno.get("oneoff") or dyno.get("state") not in RUNNING:
            continue
        point = found.setdefault(dyno["app"], {}).setdefault(
            dyno["type"], {"memory_mb": 0.0, "cpu_percent": 0.0})
        point["memory_mb"] += float(dyno.get("memory_mb") or 0)
        point["cpu_percent"] += float(dyno.get("cpu_percent") or 0)
    return found


def merge(points: list[Point], point: Point, minute: int) -> list[Point]:
    """Adds this minute's figures: the highest seen in the minute, the last KEEP_POINTS."""
    fresh = {"at": float(minute * 60), "memory_mb": round(point["memory_mb"], 1),
             "cpu_percent": round(point["cpu_percent"], 1)}
    if points and points[-1].get("at") == fresh["at"]:
        last = points[-1]
        fresh = {k: max(v, float(last.get(k, 0))) for k, v in fresh.items()}
        points = points[:-1]
    return [*points, fresh][-KEEP_POINTS:]


def record(client: redis.Redis, reported: list[dict[str, Any]], now: float | None = None
           ) -> None:
    found = totals(reported)
    if not found:
        return
    minute = int((time.time() if now is None else now) // 60)
    apps = sorted(found)
    pipe = client.pipeline(transaction=False)
    for app in apps:
        pipe.hmget(key(app), sorted(found[app]))
    stored = pipe.execute()
    for app, values in zip(apps, stored, strict=True):
        merged: dict[str | bytes, str] = {
            ptype: json.dumps(merge(_points(raw), found[app][ptype], minute))
            for ptype, raw in zip(sorted(found[app]), values, strict=True)}
        pipe.hset(key(app), mapping=merged)
        pipe.expire(key(app), KEEP_SECONDS)
    pipe.execute()


def history(client: redis.Redis, app: str, now: float | None = None) -> dict[str, list[Point]]:
    """process type -> its points of the last hour, oldest first."""
    since = ((time.time() if now is None else now) // 60 - KEEP_POINTS + 1) * 60
    found = {}
    for ptype, raw in sorted(client.hgetall(key(app)).items()):
        points = [p for p in _points(raw) if p.get("at", 0) >= since]
        if points:
            found[_text(ptype)] = points
    return found


def _points(raw: bytes | str | None) -> list[Point]:
    try:
        points = json.loads(raw) if raw else []
    except ValueError:
        return []
    return points if isinstance(points, list) else []


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
