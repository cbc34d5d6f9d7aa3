"""/v1/nodes: the hosts that run dynos (admin: platform internals)."""

from __future__ import annotations

from typing import Any

from starlette.routing import Route

from paas import auth, nodes
from paas.api.apps import route
from paas.api.context import Context
from paas.api.handlers import Call
from paas.models import now


def list_nodes(call: Call) -> list[dict[str, Any]]:
    auth.require_admin(call.user)
    return nodes.listing(call.db, now(), call.ctx.settings.node_grace)


def routes(ctx: Context) -> list[Route]:
    return [route(ctx, "/v1/nodes", list_nodes, ["GET"])]
