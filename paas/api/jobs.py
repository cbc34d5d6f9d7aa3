"""/v1/apps/{app}/cron (an app's cron jobs, `cron:run`) and /v1/admin/jobs (the platform's
own jobs, admin)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from paas import auth, clock, cron, job_runs
from paas.api.apps import app_of, route
from paas.api.context import Context
from paas.api.handlers import Call, endpoint
from paas.platform_jobs import platform_jobs


def list_cron(call: Call) -> list[dict[str, Any]]:
    return cron.listing(call.db, app_of(call), time.time())


def run_cron(call: Call) -> dict[str, Any]:
    app = app_of(call)
    run = cron.run_now(call.db, app, call.params["job"], time.time(), call.events)
    return {"job": call.params["job"], **(cron.run_dict(run) or {})}


def list_platform_jobs(call: Call) -> list[dict[str, Any]]:
    auth.require_admin(call.user)
    moment = time.time()
    return [job_runs.to_dict(call.db, job, moment)
            for job in platform_jobs(call.ctx.settings)]


def run_platform_job(call: Call) -> dict[str, Any]:
    auth.require_admin(call.user)
    job = job_runs.find(platform_jobs(call.ctx.settings), call.params["name"])
    run = job_runs.request(call.db, job, time.time())
    return {"job": job.name, "run": run.id, "state": run.state}


def waking_the_clock(handler: Callable[[Request], Any]) -> Callable[[Request], Any]:
    """`handler`, then the API's clock looks for due work at once (what the handler asked
    for has committed by then)."""
    async def wrapped(request: Request) -> Response:
        response: Response = await handler(request)
        if response.status_code < 300:
            clock.wake()
        return response

    for name in ("auth", "handler", "status"):  # read by paas/api/openapi.py
        setattr(wrapped, name, getattr(handler, name))
    return wrapped


def routes(ctx: Context) -> list[Route]:
    return [
        route(ctx, "/v1/apps/{app}/cron", list_cron, ["GET"]),
        route(ctx, "/v1/apps/{app}/cron/{job}/runs", run_cron, ["POST"], write=True,
              status=201),
        route(ctx, "/v1/admin/jobs", list_platform_jobs, ["GET"]),
        Route("/v1/admin/jobs/{name}/runs", waking_the_clock(endpoint(
            ctx, run_platform_job, write=True, status=201, wakes_agents=False)),
            methods=["POST"]),
    ]
