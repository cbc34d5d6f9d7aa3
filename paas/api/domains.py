"""/v1/apps/{app}/domains, maintenance mode and the router's figures for an app."""

from __future__ import annotations

from typing import Any

from starlette.routing import Route

from paas import autocerts, domains, metrics, usage
from paas.api.apps import app_of, route
from paas.api.context import Context
from paas.api.handlers import Call
from paas.errors import Invalid


def list_domains(call: Call) -> list[dict[str, Any]]:
    app = app_of(call)
    own = {"hostname": f"{app.name}.{call.ctx.settings.domain}", "kind": "platform",
           "created_at": app.created_at}
    return [own, *(domains.to_dict(d) for d in domains.for_app(call.db, app))]


def add_domain(call: Call) -> dict[str, Any]:
    app = app_of(call)  # a stranger learns nothing, not even what to send
    hostname = (call.body or {}).get("hostname")
    if not isinstance(hostname, str):
        raise Invalid('send {"hostname": "www.example.com"}')
    domain = domains.add(call.db, app, hostname, call.ctx.settings.domain, call.user)
    call.events.routes_changed()
    return domains.to_dict(domain)


def remove_domain(call: Call) -> dict[str, Any]:
    domain = domains.remove(call.db, app_of(call), call.params["hostname"])
    autocerts.forget(call.db, domain.hostname)  # its automatic certificate goes with it
    call.events.routes_changed()
    return domains.to_dict(domain)


def show_maintenance(call: Call) -> dict[str, Any]:
    return {"maintenance": app_of(call).maintenance}


def set_maintenance(call: Call) -> dict[str, Any]:
    app = app_of(call)
    value = (call.body or {}).get("maintenance")
    if not isinstance(value, bool):
        raise Invalid('send {"maintenance": true} or {"maintenance": false}')
    if app.maintenance != value:
        app.maintenance = value
        call.db.flush()
        call.events.routes_changed()
    return {"maintenance": app.maintenance}


def show_metrics(call: Call) -> dict[str, Any]:
    app = app_of(call)
    try:
        minutes = int(call.query.get("minutes", "60"))
    except ValueError:
        minutes = 0
    if not 1 <= minutes <= 1440:
        raise Invalid("minutes must be a whole number from 1 to 1440")
    return {**metrics.read(call.ctx.redis, app.name, minutes),
            "usage": usage.history(call.ctx.redis, app.name)}


def routes(ctx: Context) -> list[Route]:
    return [
        route(ctx, "/v1/apps/{app}/domains", list_domains, ["GET"]),
        route(ctx, "/v1/apps/{app}/domains", add_domain, ["POST"], write=True, status=201),
        route(ctx, "/v1/apps/{app}/domains/{hostname}", remove_domain, ["DELETE"], write=True),
        route(ctx, "/v1/apps/{app}/maintenance", show_maintenance, ["GET"]),
        route(ctx, "/v1/apps/{app}/maintenance", set_maintenance, ["PUT"], write=True),
        route(ctx, "/v1/apps/{app}/metrics", show_metrics, ["GET"]),
    ]
