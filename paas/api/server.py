"""The API process: JSON API, git over HTTP (and later the dashboard) in one Starlette app."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from paas import auth, dashboard, database
from paas import nodes as nodes_
from paas.api import (
    access,
    addons,
    apps,
    autocerts,
    certs,
    config,
    doctor,
    domains,
    dynos,
    internal,
    jobs,
    keys,
    nodes,
    openapi,
    users,
)
from paas.api import slugs as slug_routes
from paas.api.context import Context
from paas.api.pushes import PushBackend
from paas.clock import clock_lifespan
from paas.git import git_routes
from paas.git.ssh_listen import ssh_lifespan
from paas.models import now
from paas.reaper import chain
from paas.settings import Settings
from paas.sourcetree import SourceLimits


async def healthz(_request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def not_found(_request: Request, _exc: Exception) -> JSONResponse:
    return JSONResponse({"id": "not_found",
                         "message": "no such endpoint; /v1/openapi.json lists them"},
                        status_code=404)


async def method_not_allowed(request: Request, _exc: Exception) -> JSONResponse:
    return JSONResponse({"id": "method_not_allowed", "message": f"{request.method} is not "
                         "allowed here; /v1/openapi.json lists the methods"}, status_code=405)


async def server_error(_request: Request, _exc: Exception) -> JSONResponse:
    return JSONResponse({"id": "error", "message": "the platform failed on this request; "
                         "its API log says why"}, status_code=500)


def api_server(settings: Settings) -> Starlette:
    settings.home.mkdir(parents=True, exist_ok=True)
    ctx = Context.create(settings)
    with ctx.write_lock, ctx.sessions() as db:
        database.serialize_writes(db)  # two API processes starting at once
        auth.bootstrap(db, settings.admin_token_path, settings.service_token_path)
        database.serialize_writes(db)  # bootstrap committed: a new transaction
        nodes_.api_started(db, now())
        db.commit()
    backend = PushBackend(ctx)
    routes = [
        Route("/healthz", healthz),
        *apps.routes(ctx),
        *config.routes(ctx),
        *addons.routes(ctx),
        *dynos.routes(ctx),
        *domains.routes(ctx),
        *certs.routes(ctx),
        *autocerts.routes(ctx),
        *access.routes(ctx),
        *users.routes(ctx),
        *keys.routes(ctx),
        *nodes.routes(ctx),
        *doctor.routes(ctx),
        *openapi.routes(),
        *internal.routes(ctx),
        *slug_routes.routes(ctx),
        *jobs.routes(ctx),
        *git_routes(backend, settings.max_push_bytes, SourceLimits.of(settings)),
        *dashboard.routes(ctx),
    ]
    lifespan = chain(ssh_lifespan(backend, settings), clock_lifespan(ctx))
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={
        404: not_found, 405: method_not_allowed, Exception: server_error})
    app.state.ctx = ctx
    return app
