"""/v1/doctor: `paas doctor`'s checks, run on the API's host (admin: they show the host)."""

from __future__ import annotations

from typing import Any

from starlette.routing import Route

from paas import auth, doctor
from paas.api.apps import route
from paas.api.context import Context
from paas.api.handlers import Call


def run_checks(call: Call) -> list[dict[str, Any]]:
    auth.require_admin(call.user)
    return [finding.to_json() for finding in doctor.run()]


def routes(ctx: Context) -> list[Route]:
    return [route(ctx, "/v1/doctor", run_checks, ["GET"])]
