"""/v1/apps/{app}/formation, dynos and logs."""

from __future__ import annotations

from typing import Any

from starlette.routing import Route

from paas import dynos, formation, logs, releases
from paas.api.apps import app_of, route
from paas.api.context import Context
from paas.api.handlers import Call
from paas.errors import Invalid


def show_formation(call: Call) -> list[dict[str, Any]]:
    return [{"type": row.type, "quantity": row.quantity, "size": row.size}
            for row in formation.for_app(call.db, app_of(call))]


def update_formation(call: Call) -> list[dict[str, Any]]:
    app = app_of(call)
    changes = call.body
    if not isinstance(changes, dict) or not all(isinstance(v, int) for v in changes.values()):
        raise Invalid('send {"web": 2, "worker": 1}')
    current = releases.current(call.db, app)
    declared = list(((current.slug or {}) if current else {}).get("process_types", {}))
    formation.scale(call.db, app, declared, changes)
    return show_formation(call)


def list_dynos(call: Call) -> list[dict[str, Any]]:
    return [dynos.to_dict(d) for d in dynos.for_app(call.db, app_of(call))]


def show_logs(call: Call) -> list[dict[str, str]]:
    app = app_of(call)
    count = min(int(call.query.get("lines", "100")), call.ctx.settings.log_lines)
    return logs.recent(call.ctx.redis, app.name, count)


def routes(ctx: Context) -> list[Route]:
    return [
        route(ctx, "/v1/apps/{app}/formation", show_formation, ["GET"]),
        route(ctx, "/v1/apps/{app}/formation", update_formation, ["PATCH"], write=True),
        route(ctx, "/v1/apps/{app}/dynos", list_dynos, ["GET"]),
        route(ctx, "/v1/apps/{app}/logs", show_logs, ["GET"]),
    ]
