"""Service endpoints under /v1/internal: the build worker, the agent and the router are
clients of the API with the service token, never of the database."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from starlette.concurrency import iterate_in_threadpool
from starlette.responses import StreamingResponse
from starlette.routing import Route

from paas import builds, config_vars, dynos, releases, usage
from paas import routes as routes_
from paas.api.context import Context
from paas.api.handlers import Call, endpoint
from paas.errors import Invalid
from paas.models import App
from paas.redact import neutral
from paas.sourcetree import SourceLimits


def show_build(call: Call) -> dict[str, Any]:
    build = builds.get(call.db, call.params["id"])
    app = build.app
    return {
        "id": build.id, "app": app.name, "uid": app.uid, "commit": build.commit,
        "status": build.status, "config": config_vars.current(call.db, app),
        "previous_layers": builds.previous_layer_digests(call.db, app),
    }


def build_source(call: Call) -> StreamingResponse:
    build = builds.get(call.db, call.params["id"])
    limits = SourceLimits.of(call.ctx.settings)
    chunks = call.ctx.repos.archive(build.app.name, build.commit, limits)
    return StreamingResponse(iterate_in_threadpool(chunks), media_type="application/x-tar")


def start_build(call: Call) -> dict[str, Any]:
    build = builds.get(call.db, call.params["id"])
    builds.start(call.db, build)
    return builds.to_dict(build)


def finish_build(call: Call) -> dict[str, Any]:
    build = builds.get(call.db, call.params["id"])
    body = call.body or {}
    if body.get("status") == "succeeded" and isinstance(body.get("slug"), dict):
        builds.succeed(call.db, build, body["slug"], call.events)
        _evaluate(call, build.app)
    elif body.get("status") == "failed":
        builds.fail(call.db, build, str(body.get("error", "build failed")), call.events)
    else:
        raise Invalid('send {"status": "succeeded", "slug": {...}} or {"status": "failed"}')
    return builds.to_dict(build)


def desired(call: Call) -> dict[str, Any]:
    return dynos.desired(call.db, call.ctx.settings.dyno_port)


def report_dynos(call: Call) -> dict[str, Any]:
    reported = (call.body or {}).get("dynos")
    if not isinstance(reported, list):
        raise Invalid('send {"dynos": [...]}')
    changed = dynos.report(call.db, reported)
    usage.record(call.ctx.redis, reported)
    home = call.ctx.settings.home
    for failed in (call.body or {}).get("failed_oneoffs") or []:
        changed.add(dynos.start_failed(call.db, failed["app"], failed["type"], failed["index"],
                                       neutral(str(failed["error"]), home)) or 0)
    for failed in (call.body or {}).get("failed_starts") or []:
        releases.start_failed(call.db, failed["app"], failed["release"], failed["type"],
                              failed["index"], neutral(str(failed["error"]), home), call.events,
                              permanent=bool(failed.get("permanent")))
    changed.discard(0)
    for app in call.db.scalars(select(App).where(App.id.in_(changed))):
        _evaluate(call, app)
    if changed:
        call.events.routes_changed()
    return {"changed": len(changed)}


def _evaluate(call: Call, app: App) -> None:
    releases.evaluate(call.db, app, call.ctx.repos, call.events)


def show_routes(call: Call) -> dict[str, Any]:
    # Read before the table: a router that applies this table has at least this generation.
    generation = call.ctx.events.routes_generation()
    domain = call.ctx.settings.domain
    return {"routes": routes_.table(call.db, domain), "generation": generation,
            "certificates": routes_.certificates(call.db, domain)}


def routes(ctx: Context) -> list[Route]:
    def r(path: str, handler: Any, methods: list[str], write: bool = False) -> Route:
        return Route(path, endpoint(ctx, handler, write=write, service=True), methods=methods)

    return [
        r("/v1/internal/builds/{id}", show_build, ["GET"]),
        r("/v1/internal/builds/{id}/source", build_source, ["GET"]),
        r("/v1/internal/builds/{id}/start", start_build, ["POST"], write=True),
        r("/v1/internal/builds/{id}/result", finish_build, ["POST"], write=True),
        r("/v1/internal/desired", desired, ["GET"]),
        r("/v1/internal/dynos", report_dynos, ["PUT"], write=True),
        r("/v1/internal/routes", show_routes, ["GET"]),
    ]
