"""The public JSON API under /v1: what the CLI and the dashboard call."""

from __future__ import annotations

from typing import Any

from starlette.routing import Route

from paas import apps, builds, config_vars, dynos, formation, logs, releases
from paas.api.context import Context
from paas.api.handlers import Call, endpoint
from paas.errors import Invalid
from paas.models import App


def _app(call: Call) -> App:
    return apps.get(call.db, call.params["app"], call.user)


def _app_dict(call: Call, app: App) -> dict[str, Any]:
    s = call.ctx.settings
    return apps.to_dict(app, releases.current(call.db, app), s.domain, s.router_port)


def list_apps(call: Call) -> list[dict[str, Any]]:
    return [_app_dict(call, app) for app in apps.visible(call.db, call.user)]


def create_app(call: Call) -> dict[str, Any]:
    name = (call.body or {}).get("name")
    if not isinstance(name, str):
        raise Invalid('give the app a name: {"name": "my-app"}')
    app = apps.create(call.db, name, call.user)
    call.ctx.repos.create(app.name)
    return _app_dict(call, app)


def show_app(call: Call) -> dict[str, Any]:
    app = _app(call)
    info = _app_dict(call, app)
    info["git_url"] = f"{call.ctx.settings.api_url}/git/{app.name}.git"
    info["formation"] = {row.type: row.quantity for row in formation.for_app(call.db, app)}
    info["dynos"] = [dynos.to_dict(d) for d in dynos.for_app(call.db, app)]
    pending = releases.pending(call.db, app)
    info["pending_release"] = pending.version if pending else None
    return info


def destroy_app(call: Call) -> dict[str, Any]:
    app = _app(call)
    apps.destroy(call.db, app, call.query.get("confirm"))
    call.ctx.repos.delete(app.name)
    call.events.routes_changed()
    return {"destroyed": app.name}


def list_builds(call: Call) -> list[dict[str, Any]]:
    return [builds.to_dict(b) for b in builds.for_app(call.db, _app(call))]


def list_releases(call: Call) -> list[dict[str, Any]]:
    app = _app(call)
    return [releases.to_dict(r, app) for r in releases.for_app(call.db, app)]


def show_config(call: Call) -> dict[str, str]:
    return config_vars.current(call.db, _app(call))


def update_config(call: Call) -> dict[str, Any]:
    app = _app(call)
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


def show_formation(call: Call) -> list[dict[str, Any]]:
    return [{"type": row.type, "quantity": row.quantity, "size": row.size}
            for row in formation.for_app(call.db, _app(call))]


def update_formation(call: Call) -> list[dict[str, Any]]:
    app = _app(call)
    changes = call.body
    if not isinstance(changes, dict) or not all(isinstance(v, int) for v in changes.values()):
        raise Invalid('send {"web": 2, "worker": 1}')
    current = releases.current(call.db, app)
    declared = list(((current.slug or {}) if current else {}).get("process_types", {}))
    formation.scale(call.db, app, declared, changes)
    return show_formation(call)


def list_dynos(call: Call) -> list[dict[str, Any]]:
    return [dynos.to_dict(d) for d in dynos.for_app(call.db, _app(call))]


def show_logs(call: Call) -> list[dict[str, str]]:
    app = _app(call)
    count = min(int(call.query.get("lines", "100")), call.ctx.settings.log_lines)
    return logs.recent(call.ctx.redis, app.name, count)


def routes(ctx: Context) -> list[Route]:
    def r(path: str, handler: Any, methods: list[str], **kw: Any) -> Route:
        return Route(path, endpoint(ctx, handler, **kw), methods=methods)

    return [
        r("/v1/apps", list_apps, ["GET"]),
        r("/v1/apps", create_app, ["POST"], write=True, status=201),
        r("/v1/apps/{app}", show_app, ["GET"]),
        r("/v1/apps/{app}", destroy_app, ["DELETE"], write=True),
        r("/v1/apps/{app}/builds", list_builds, ["GET"]),
        r("/v1/apps/{app}/releases", list_releases, ["GET"]),
        r("/v1/apps/{app}/config", show_config, ["GET"]),
        r("/v1/apps/{app}/config", update_config, ["PATCH"], write=True),
        r("/v1/apps/{app}/formation", show_formation, ["GET"]),
        r("/v1/apps/{app}/formation", update_formation, ["PATCH"], write=True),
        r("/v1/apps/{app}/dynos", list_dynos, ["GET"]),
        r("/v1/apps/{app}/logs", show_logs, ["GET"]),
    ]
