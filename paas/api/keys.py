"""/v1/keys: the SSH public keys of the calling user (for git push over SSH)."""

from __future__ import annotations

from typing import Any

from starlette.routing import Route

from paas import keys
from paas.api.apps import route
from paas.api.context import Context
from paas.api.handlers import Call
from paas.errors import Invalid


def list_keys(call: Call) -> list[dict[str, Any]]:
    return [keys.to_dict(k) for k in keys.of(call.db, call.user)]


def add_key(call: Call) -> dict[str, Any]:
    text = call.body.get("public_key") if isinstance(call.body, dict) else None
    if not isinstance(text, str):
        raise Invalid('send {"public_key": "ssh-ed25519 AAAA... you@host"}')
    return keys.to_dict(keys.add(call.db, call.user, text))


def remove_key(call: Call) -> dict[str, Any]:
    return keys.to_dict(keys.remove(call.db, call.user, call.params["key"]))


def routes(ctx: Context) -> list[Route]:
    return [
        route(ctx, "/v1/keys", list_keys, ["GET"]),
        route(ctx, "/v1/keys", add_key, ["POST"], write=True, status=201),
        route(ctx, "/v1/keys/{key:path}", remove_key, ["DELETE"], write=True),
    ]
