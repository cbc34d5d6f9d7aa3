"""/v1/apps/{app}/config: config vars; a change makes a new release."""

from __future__ import annotations

from typing import Any

from starlette.routing import Route

from paas import config_vars, releases
from paas.api.apps import app_of, route
from paas.api.context import Context
from paas.api.handlers import Call
from paas.errors import Invalid


def show_config(call: Call) -> dict[str, str]:
    return config_vars.current(call.db, app_of(call))


def update_config(call: Call) -> dict[str, Any]:
    app = app_of(call)
    changes = call.body
    if not isinstance(changes, dict) or not all(
        isinstance(k, str) and (v is None or isinstance(v, str)) for k, v in changes.items()
    ):
        raise Invalid('send {"KEY": "value", "OTHER": null} (null unsets a var)')
    description = config_vars.apply(call.db, app, changes)
    current = releases.current(call.db, app)
    result: dict[str, Any] = {"config": config_vars.current(call.db, app), "release": None}
    if current is not None and call.query.get("restart", "true") != "false":
        release = releases.create(call.db, app, slug=current.slug or {}, commit=current.commit,
                                  description=description, created_by=call.user.email)
        result["release"] = release.version
    return result


def routes(ctx: Context) -> list[Route]:
    return [
        route(ctx, "/v1/apps/{app}/config", show_config, ["GET"]),
        route(ctx, "/v1/apps/{app}/config", update_config, ["PATCH"], write=True),
    ]
