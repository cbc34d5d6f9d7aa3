"""/v1/apps/{app}/certs: TLS certificates, terminated by the router (SNI)."""

from __future__ import annotations

from typing import Any

from starlette.routing import Route

from paas import certs
from paas.api.apps import app_of, route
from paas.api.context import Context
from paas.api.handlers import Call
from paas.errors import Invalid


def list_certs(call: Call) -> list[dict[str, Any]]:
    return [certs.to_dict(c) for c in certs.for_app(call.db, app_of(call))]


def add_cert(call: Call) -> dict[str, Any]:
    app = app_of(call)  # a stranger learns nothing, not even what to send
    body = call.body or {}
    cert_pem, key_pem = body.get("certificate"), body.get("key")
    if not isinstance(cert_pem, str) or not isinstance(key_pem, str):
        raise Invalid('send {"certificate": "<PEM>", "key": "<PEM>"}')
    cert = certs.add(call.db, app, cert_pem, key_pem, call.ctx.settings.domain)
    call.events.routes_changed()
    return certs.to_dict(cert)


def remove_cert(call: Call) -> dict[str, Any]:
    cert = certs.remove(call.db, app_of(call), call.params["name"])
    call.events.routes_changed()
    return certs.to_dict(cert)


def routes(ctx: Context) -> list[Route]:
    return [
        route(ctx, "/v1/apps/{app}/certs", list_certs, ["GET"]),
        route(ctx, "/v1/apps/{app}/certs", add_cert, ["POST"], write=True, status=201),
        route(ctx, "/v1/apps/{app}/certs/{name}", remove_cert, ["DELETE"], write=True),
    ]
