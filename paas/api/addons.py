"""/v1/addons and /v1/apps/{app}/addons: add-ons (Postgres, Redis), their attachments, plans,
credentials and pg:info."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from starlette.routing import Route

from paas import apps
from paas.addons import addons, plans, postgres
from paas.api.apps import app_of, route
from paas.api.context import Context
from paas.api.handlers import Call
from paas.errors import Invalid, NotFound
from paas.models import Addon


def _body(call: Call) -> dict[str, Any]:
    body = call.body if call.body is not None else {}
    if not isinstance(body, dict) or not all(isinstance(v, str | None) for v in body.values()):
        raise Invalid('send a JSON object of strings, e.g. {"plan": "postgres:mini"}')
    return body


def _addon(call: Call, service: str | None = None) -> Addon:
    return addons.get(call.db, app_of(call), call.params.get("addon"), service)


def _shown(call: Call, addon: Addon) -> dict[str, Any]:
    return addons.to_dict(call.db, addon)


def list_plans(call: Call) -> list[dict[str, object]]:
    return plans.table()


def list_addons(call: Call) -> list[dict[str, Any]]:
    app = app_of(call)
    return [{**_shown(call, a.addon), "as": a.name}
            for a in addons.attachments_of(call.db, app)]


def create_addon(call: Call) -> dict[str, Any]:
    app = app_of(call)
    body = _body(call)
    if not body.get("plan"):
        raise Invalid('name the service and plan: {"plan": "postgres"} or "postgres:standard"')
    addon = addons.create(call.db, app, body["plan"], call.user, name=body.get("name"),
                          as_name=body.get("as"))
    return _shown(call, addon)


def show_addon(call: Call) -> dict[str, Any]:
    return _shown(call, _addon(call))


def upgrade_addon(call: Call) -> dict[str, Any]:
    addon = _addon(call)
    addons.require_owner_access(call.db, call.user, addon)
    plan = _body(call).get("plan")
    if not plan:
        raise Invalid('name the plan: {"plan": "standard"} or "postgres:standard"')
    addons.upgrade(call.db, addon, plan)
    return _shown(call, addon)


def destroy_addon(call: Call) -> dict[str, Any]:
    addon = _addon(call)
    addons.require_owner_access(call.db, call.user, addon)
    addons.destroy(call.db, addon, call.query.get("confirm"),
                   call.query.get("purge", "false") == "true", call.events)
    return _shown(call, addon)


def attach_addon(call: Call) -> dict[str, Any]:
    """Attaches an add-on of another app (by its name) to this one."""
    app = app_of(call)
    body = _body(call)
    name = body.get("addon") or ""
    addon = _by_name(call, name)
    addons.attach(call.db, addon, app, call.user, body.get("as"), call.events,
                  call.ctx.settings.dyno_subnet)
    return _shown(call, addon)


def _by_name(call: Call, name: str) -> Addon:
    """An add-on the user may see: one of an app they have access to."""
    addon = call.db.scalar(select(Addon).where(Addon.name == name))
    if addon is None or addon.app_id is None:
        raise NotFound(f"no add-on named {name!r}: `paas addons -a APP` lists an app's")
    try:
        apps.get(call.db, addon.app_name, call.user)
    except NotFound:
        raise NotFound(f"no add-on named {name!r}: `paas addons -a APP` lists an app's") from None
    return addon


def detach_addon(call: Call) -> dict[str, Any]:
    app = app_of(call)
    addon = _addon(call)
    addons.detach(call.db, addon, app, call.events)
    return _shown(call, addon)


def rotate_credentials(call: Call) -> dict[str, Any]:
    addon = _addon(call)
    addons.require_owner_access(call.db, call.user, addon)
    addons.rotate(call.db, addon)
    return _shown(call, addon)


def pg_info(call: Call) -> dict[str, Any]:
    addon = _addon(call, "postgres")
    return postgres.info(call.db, addon, call.ctx.settings)


def routes(ctx: Context) -> list[Route]:
    one = "/v1/apps/{app}/addons/{addon}"
    return [
        route(ctx, "/v1/addons/plans", list_plans, ["GET"]),
        route(ctx, "/v1/apps/{app}/addons", list_addons, ["GET"]),
        route(ctx, "/v1/apps/{app}/addons", create_addon, ["POST"], write=True, status=201),
        route(ctx, one, show_addon, ["GET"]),
        route(ctx, one, upgrade_addon, ["PATCH"], write=True),
        route(ctx, one, destroy_addon, ["DELETE"], write=True),
        route(ctx, "/v1/apps/{app}/addon-attachments", attach_addon, ["POST"], write=True,
              status=201),
        route(ctx, "/v1/apps/{app}/addon-attachments/{addon}", detach_addon, ["DELETE"],
              write=True),
        route(ctx, f"{one}/credentials/rotate", rotate_credentials, ["POST"], write=True),
        route(ctx, f"{one}/pg-info", pg_info, ["GET"]),
    ]
