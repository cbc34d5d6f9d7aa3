"""/v1/apps: apps, their builds and releases."""

from __future__ import annotations

from typing import Any

from starlette.routing import Route

from paas import apps, auth, builds, domains, dynos, formation, metrics, releases
from paas.addons import addons
from paas.api.context import Context
from paas.api.handlers import Call, endpoint
from paas.builder import disk
from paas.errors import Invalid
from paas.models import App, User
from paas.slugs.layers import LayerStore


def app_of(call: Call) -> App:
    return apps.get(call.db, call.params["app"], call.user)


def _app_dict(call: Call, app: App) -> dict[str, Any]:
    s = call.ctx.settings
    info = apps.to_dict(app, releases.current(call.db, app), s.domain, s.router_port)
    owner = call.db.get(User, app.owner_id) if app.owner_id else None
    info["owner"] = owner.email if owner else None
    return info


def list_apps(call: Call) -> list[dict[str, Any]]:
    return [_app_dict(call, app) for app in apps.visible(call.db, call.user)]


def create(call: Call) -> dict[str, Any]:
    name = (call.body or {}).get("name")
    if not isinstance(name, str):
        raise Invalid('give the app a name: {"name": "my-app"}')
    app = apps.create(call.db, name, call.user)
    call.ctx.repos.create(app.name)
    return _app_dict(call, app)


def show_app(call: Call) -> dict[str, Any]:
    app = app_of(call)
    info = _app_dict(call, app)
    info["git_url"] = f"{call.ctx.settings.api_url}/git/{app.name}.git"
    info["formation"] = {row.type: row.quantity for row in formation.for_app(call.db, app)}
    info["dynos"] = dynos.listing(call.db, app)
    pending = releases.pending(call.db, app)
    info["pending_release"] = pending.version if pending else None
    info["domains"] = [d.hostname for d in domains.for_app(call.db, app)]
    info["maintenance"] = app.maintenance
    info["router"] = metrics.summary(call.ctx.redis, app.name)
    return info


def destroy_app(call: Call) -> dict[str, Any]:
    app = app_of(call)
    auth.require_manage(call.user, app, "destroy it")
    if call.query.get("confirm") == app.name:  # its add-ons go with it (refused if shared)
        addons.destroy_owned(call.db, app, call.events)
    apps.destroy(call.db, app, call.query.get("confirm"))
    call.ctx.repos.delete(app.name)
    disk.remove_app_cache(call.ctx.settings, app.name)
    call.events.routes_changed()
    return {"destroyed": app.name}


def list_builds(call: Call) -> list[dict[str, Any]]:
    return [builds.to_dict(b) for b in builds.for_app(call.db, app_of(call))]


def list_releases(call: Call) -> list[dict[str, Any]]:
    app = app_of(call)
    return [releases.to_dict(r, app) for r in releases.for_app(call.db, app)]


def _version(raw: str) -> int:
    digits = raw[1:] if raw[:1] in ("v", "V") else raw
    if not digits.isdigit() or len(digits) > 9:
        raise Invalid(f"{raw[:20]!r} is not a release version: use a number like 3 or v3")
    return int(digits)


def show_release(call: Call) -> dict[str, Any]:
    app = app_of(call)
    release = releases.get(call.db, app, _version(call.params["version"]))
    info = releases.to_dict(release, app)
    info["config_keys"] = sorted(release.config)
    return info


def create_release(call: Call) -> dict[str, Any]:
    """Only rollbacks: every other release comes from a build or a config change."""
    app = app_of(call)
    body = call.body if isinstance(call.body, dict) else {}
    if "rollback" not in body:
        raise Invalid('send {"rollback": N} (or {"rollback": null} for the previous release)')
    target = body["rollback"]
    version = None if target is None else _version(str(target))
    release = releases.rollback(call.db, app, version, call.user.email,
                                LayerStore(call.ctx.settings))
    return releases.to_dict(release, app)


def route(ctx: Context, path: str, handler: Any, methods: list[str], **kw: Any) -> Route:
    return Route(path, endpoint(ctx, handler, **kw), methods=methods)


def routes(ctx: Context) -> list[Route]:
    return [
        route(ctx, "/v1/apps", list_apps, ["GET"]),
        route(ctx, "/v1/apps", create, ["POST"], write=True, status=201),
        route(ctx, "/v1/apps/{app}", show_app, ["GET"]),
        route(ctx, "/v1/apps/{app}", destroy_app, ["DELETE"], write=True),
        route(ctx, "/v1/apps/{app}/builds", list_builds, ["GET"]),
        route(ctx, "/v1/apps/{app}/releases", list_releases, ["GET"]),
        route(ctx, "/v1/apps/{app}/releases", create_release, ["POST"], write=True,
              status=201),
        route(ctx, "/v1/apps/{app}/releases/{version}", show_release, ["GET"]),
    ]
