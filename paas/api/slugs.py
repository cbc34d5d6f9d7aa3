"""/v1/slugs/gc (admin), /v1/internal/slugs/gc (after each deploy), /v1/apps/{app}/builds/{id}."""

from __future__ import annotations

import time
from typing import Any

from starlette.routing import Route

from paas import auth, builds, job_runs
from paas.api.apps import app_of, route
from paas.api.context import Context
from paas.api.handlers import Call, endpoint
from paas.api.jobs import waking_the_clock
from paas.errors import Invalid, NotFound
from paas.platform_jobs import platform_jobs
from paas.slugs import gc
from paas.slugs.layers import LayerStore


def collect_garbage(call: Call) -> dict[str, Any]:
    auth.require_admin(call.user)
    body = call.body if isinstance(call.body, dict) else {}
    min_age = body.get("min_age", gc.DEFAULT_MIN_AGE)
    if not isinstance(min_age, int | float) or isinstance(min_age, bool) or min_age < 0:
        raise Invalid('send {"min_age": <seconds, 0 or more>} or nothing')
    return gc.to_dict(gc.collect(call.db, LayerStore(call.ctx.settings), float(min_age)))


def collect_after_deploy(call: Call) -> dict[str, Any]:
    """Asks for a run of the `layer-gc` platform job (the clock runs it at once)."""
    job = job_runs.find(platform_jobs(call.ctx.settings), "layer-gc")
    run = job_runs.request(call.db, job, time.time(), trigger="build", coalesce=True)
    return {"job": job.name, "run": run.id}


def show_build(call: Call) -> dict[str, Any]:
    app = app_of(call)
    wanted = call.params["build"]
    found = builds.for_app(call.db, app)
    if wanted == "latest":
        if not found:
            raise NotFound(f"{app.name} has no builds yet: push to it first")
        build = found[0]
    else:
        matches = [b for b in found if b.id.startswith(wanted)]
        if len(matches) != 1:
            raise NotFound(f"{app.name} has no build {wanted}; `paas builds -a {app.name}` "
                           "lists them")
        build = matches[0]
    return builds.to_dict(build)


def routes(ctx: Context) -> list[Route]:
    return [
        route(ctx, "/v1/slugs/gc", collect_garbage, ["POST"], write=True),
        Route("/v1/internal/slugs/gc", waking_the_clock(endpoint(
            ctx, collect_after_deploy, write=True, service=True, wakes_agents=False)),
            methods=["POST"]),
        route(ctx, "/v1/apps/{app}/builds/{build}", show_build, ["GET"]),
    ]
