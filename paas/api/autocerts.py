"""/v1/apps/{app}/acm (automatic certificates, Heroku's name) and /v1/apps/{app}/https-redirect."""

from __future__ import annotations

import time
from typing import Any

from starlette.routing import Route

from paas import autocerts
from paas.api.apps import app_of, route
from paas.api.context import Context
from paas.api.handlers import Call
from paas.errors import Invalid

HSTS_MAX = 2 * 365 * 86400


def show(call: Call) -> dict[str, Any]:
    return autocerts.status(call.db, app_of(call), call.ctx.settings)


def enable(call: Call) -> dict[str, Any]:
    app = app_of(call)
    if not app.acme_enabled:
        app.acme_enabled = True
        if call.ctx.settings.acme_directory:  # else the orderer's next run
            autocerts.reconcile(call.db, call.ctx.settings, time.time())
    return autocerts.status(call.db, app, call.ctx.settings)


def disable(call: Call) -> dict[str, Any]:
    app = app_of(call)
    if autocerts.disable(call.db, app):
        call.events.routes_changed()
    return autocerts.status(call.db, app, call.ctx.settings)


def show_redirect(call: Call) -> dict[str, Any]:
    app = app_of(call)
    return {"https_redirect": app.https_redirect, "hsts_max_age": app.hsts_max_age}


def set_redirect(call: Call) -> dict[str, Any]:
    app = app_of(call)
    body = call.body if isinstance(call.body, dict) else {}
    enabled, hsts = body.get("https_redirect"), body.get("hsts_max_age", 0)
    if not isinstance(enabled, bool) or not isinstance(hsts, int) or isinstance(hsts, bool) \
            or not 0 <= hsts <= HSTS_MAX:
        raise Invalid('send {"https_redirect": true, "hsts_max_age": 0} (HSTS max-age in '
                      f"seconds, 0 to {HSTS_MAX}; 0: no Strict-Transport-Security)")
    if not enabled:
        hsts = 0
    if (app.https_redirect, app.hsts_max_age) != (enabled, hsts):
        app.https_redirect, app.hsts_max_age = enabled, hsts
        call.db.flush()
        call.events.routes_changed()
    return show_redirect(call)


def routes(ctx: Context) -> list[Route]:
    return [
        route(ctx, "/v1/apps/{app}/acm", show, ["GET"]),
        route(ctx, "/v1/apps/{app}/acm", enable, ["POST"], write=True),
        route(ctx, "/v1/apps/{app}/acm", disable, ["DELETE"], write=True),
        route(ctx, "/v1/apps/{app}/https-redirect", show_redirect, ["GET"]),
        route(ctx, "/v1/apps/{app}/https-redirect", set_redirect, ["PUT"], write=True),
    ]
