"""The API process: JSON API, git over HTTP (and later the dashboard) in one Starlette app."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from paas import auth
from paas.api import apps, config, dynos, internal
from paas.api.context import Context
from paas.api.pushes import PushBackend
from paas.build.celery_app import make_celery
from paas.git import git_routes
from paas.settings import Settings


async def healthz(_request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def not_found(_request: Request, _exc: Exception) -> JSONResponse:
    return JSONResponse({"id": "not_found", "message": "no such endpoint; see /v1/"},
                        status_code=404)


def create_app(settings: Settings) -> Starlette:
    settings.home.mkdir(parents=True, exist_ok=True)
    ctx = Context.create(settings, make_celery(settings))
    with ctx.sessions() as db:
        auth.bootstrap(db, settings.admin_token_path, settings.service_token_path)
    routes = [
        Route("/healthz", healthz),
        *apps.routes(ctx),
        *config.routes(ctx),
        *dynos.routes(ctx),
        *internal.routes(ctx),
        *git_routes(PushBackend(ctx), settings.max_push_bytes),
    ]
    app = Starlette(routes=routes, exception_handlers={404: not_found})
    app.state.ctx = ctx
    return app
