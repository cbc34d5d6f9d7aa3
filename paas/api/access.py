"""/v1/apps/{app}/collaborators: who besides the owner may see and change an app."""

from __future__ import annotations

from typing import Any

from starlette.routing import Route

from paas import access, auth
from paas.api.apps import app_of, route
from paas.api.context import Context
from paas.api.handlers import Call
from paas.errors import Invalid


def list_access(call: Call) -> list[dict[str, Any]]:
    return access.listing(call.db, app_of(call))


def add_collaborator(call: Call) -> list[dict[str, Any]]:
    app = app_of(call)
    auth.require_manage(call.user, app, "add collaborators")
    email = call.body.get("email") if isinstance(call.body, dict) else None
    if not isinstance(email, str):
        raise Invalid('send {"email": "ada@example.com"}')
    access.add(call.db, app, email)
    return access.listing(call.db, app)


def remove_collaborator(call: Call) -> list[dict[str, Any]]:
    app = app_of(call)
    email = call.params["email"]
    if email.strip().lower() != call.user.email:
        auth.require_manage(call.user, app, "remove collaborators")
    access.remove(call.db, app, email)
    return access.listing(call.db, app)


def routes(ctx: Context) -> list[Route]:
    return [
        route(ctx, "/v1/apps/{app}/collaborators", list_access, ["GET"]),
        route(ctx, "/v1/apps/{app}/collaborators", add_collaborator, ["POST"], write=True,
              status=201),
        route(ctx, "/v1/apps/{app}/collaborators/{email}", remove_collaborator, ["DELETE"],
              write=True),
    ]
