"""Service endpoints under /v1/internal: the build worker, the agents (one per node) and the
router are clients of the API with the service token, never of the database. Bodies and
answers are the wire types of paas/wire.py."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from sqlalchemy import select
from starlette.concurrency import iterate_in_threadpool
from starlette.responses import StreamingResponse
from starlette.routing import Route

from paas import builds, config_vars, dynos, nodes, releases, scheduling, usage
from paas import oneoffs as oneoffs_
from paas import routes as routes_
from paas.addons import addons
from paas.api.context import Context
from paas.api.handlers import Call, endpoint
from paas.errors import Malformed
from paas.models import App, now
from paas.redact import neutral
from paas.sourcetree import SourceLimits
from paas.wire import BuildInfo, BuildResult, NodeInfo, NodeReport, RouteTable, Wire, WireError

W = TypeVar("W", bound=Wire)


def body_as(call: Call, kind: type[W]) -> W:
    """The request's body as a wire type; one that does not match it is a 400."""
    try:
        return kind.from_json(call.body)
    except WireError as error:
        raise Malformed(str(error)) from None


def show_build(call: Call) -> dict[str, Any]:
    build = builds.get(call.db, call.params["id"])
    app = build.app
    return BuildInfo(id=build.id, app=app.name, uid=app.uid, commit=build.commit,
                     status=build.status, config=config_vars.current(call.db, app),
                     previous_layers=tuple(builds.previous_layer_digests(call.db, app))
                     ).to_json()


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
    result = body_as(call, BuildResult)
    if result.slug is not None and result.status == "succeeded":
        builds.succeed(call.db, build, result.slug.to_json(), call.events)
        _evaluate(call, build.app)
    else:
        builds.fail(call.db, build, result.error or "build failed", call.events)
    return builds.to_dict(build)


def register_node(call: Call) -> dict[str, Any]:
    node = nodes.register(call.db, call.params["node"], body_as(call, NodeInfo), now())
    return {"name": node.name, "registered_at": node.registered_at}


def desired(call: Call) -> dict[str, Any]:
    settings = call.ctx.settings
    node = call.params["node"]
    state = scheduling.desired(call.db, node, now(), settings.node_grace, settings.dyno_port)
    servers = tuple(addons.desired(call.db, node, settings.dyno_subnet))
    return dataclasses.replace(state, addons=servers).to_json()


def report_dynos(call: Call) -> dict[str, Any]:
    reported = body_as(call, NodeReport)
    settings = call.ctx.settings
    changed = scheduling.report(call.db, call.params["node"], reported, now(),
                                settings.node_grace)
    # Every node's dynos: a type's figure is its sum over the nodes.
    usage.record(call.ctx.redis, dynos.usage_figures(call.db))
    for failed in reported.failed_oneoffs:
        changed.add(oneoffs_.start_failed(call.db, failed.app, failed.type, failed.index,
                                          neutral(failed.error, settings.home)) or 0)
    for unstarted in reported.failed_starts:
        releases.start_failed(call.db, unstarted.app, unstarted.release, unstarted.type,
                              unstarted.index, neutral(unstarted.error, settings.home),
                              call.events, permanent=unstarted.permanent)
    changed.discard(0)
    if addons.reported(call.db, call.params["node"], reported.addons, call.events,
                       settings.dyno_subnet):
        call.events.desired_changed()  # a config var that waited for its server: released
    for app in call.db.scalars(select(App).where(App.id.in_(changed))):
        _evaluate(call, app)  # promotes a release whose web dynos are up, in this request
    if changed:
        call.events.routes_changed()
        call.events.desired_changed()  # a promoted release: the old one's dynos retire
    return {"changed": len(changed)}


def _evaluate(call: Call, app: App) -> None:
    releases.evaluate(call.db, app, call.ctx.repos, call.events)


def show_routes(call: Call) -> dict[str, Any]:
    # Read before the table: a router that applies this table has at least this generation.
    generation = call.ctx.events.routes_generation()
    domain = call.ctx.settings.domain
    return RouteTable(routes=routes_.table(call.db, domain), generation=generation,
                      certificates=routes_.certificates(call.db, domain),
                      challenges=routes_.challenges(call.db)).to_json()


def routes(ctx: Context) -> list[Route]:
    def r(path: str, handler: Any, methods: list[str], write: bool = False,
          wakes_agents: bool = False) -> Route:
        return Route(path, endpoint(ctx, handler, write=write, service=True,
                                    wakes_agents=wakes_agents), methods=methods)

    return [
        r("/v1/internal/builds/{id}", show_build, ["GET"]),
        r("/v1/internal/builds/{id}/source", build_source, ["GET"]),
        r("/v1/internal/builds/{id}/start", start_build, ["POST"], write=True),
        # Its release is wanted at once.
        r("/v1/internal/builds/{id}/result", finish_build, ["POST"], write=True,
          wakes_agents=True),
        r("/v1/internal/nodes/{node}", register_node, ["PUT"], write=True),
        # A heartbeat, and it may assign dynos: a write.
        r("/v1/internal/nodes/{node}/desired", desired, ["GET"], write=True),
        r("/v1/internal/nodes/{node}/dynos", report_dynos, ["PUT"], write=True),
        r("/v1/internal/routes", show_routes, ["GET"]),
    ]
