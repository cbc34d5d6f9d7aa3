"""/v1/login, /v1/account, /v1/tokens and /v1/users: who you are and how you prove it."""

from __future__ import annotations

from typing import Any

from starlette.routing import Route

from paas import auth, users
from paas.api.apps import route
from paas.api.context import Context
from paas.api.handlers import Call
from paas.errors import Invalid


def _strings(body: Any, *keys: str) -> list[str]:
    if not isinstance(body, dict) or not all(isinstance(body.get(k), str) for k in keys):
        raise Invalid("send " + ", ".join(f'"{k}"' for k in keys) + " as JSON strings")
    return [body[k] for k in keys]


def _description(body: Any, default: str) -> str:
    value = body.get("description") if isinstance(body, dict) else None
    return value if isinstance(value, str) and value.strip() else default


def login(call: Call) -> dict[str, Any]:
    email, password = _strings(call.body, "email", "password")
    user = users.login(call.db, email, password)
    row, token = auth.create_token(call.db, user, _description(call.body, "paas login"))
    return {"email": user.email, "token": token, "id": row.id}


def account(call: Call) -> dict[str, Any]:
    return {**users.to_dict(call.user), "token_id": call.token_id}


def list_tokens(call: Call) -> list[dict[str, Any]]:
    return [auth.token_dict(row, call.token_id) for row in auth.tokens_of(call.db, call.user)]


def create_token(call: Call) -> dict[str, Any]:
    row, token = auth.create_token(call.db, call.user, _description(call.body, "paas tokens"))
    return {**auth.token_dict(row, call.token_id), "token": token}


def revoke_token(call: Call) -> dict[str, Any]:
    raw = call.params["id"]
    if not raw.isdigit() or len(raw) > 12:
        raise Invalid(f"{raw[:20]!r} is not a token id: `paas tokens` lists them")
    row = auth.revoke(call.db, call.user, int(raw))
    return auth.token_dict(row, call.token_id)


def list_users(call: Call) -> list[dict[str, Any]]:
    auth.require_admin(call.user)
    return [users.to_dict(u) for u in users.everyone(call.db)]


def create_user(call: Call) -> dict[str, Any]:
    auth.require_admin(call.user)
    email, password = _strings(call.body, "email", "password")
    return users.to_dict(users.create(call.db, email, password))


def routes(ctx: Context) -> list[Route]:
    return [
        route(ctx, "/v1/login", login, ["POST"], write=True, status=201, anonymous=True),
        route(ctx, "/v1/account", account, ["GET"]),
        route(ctx, "/v1/tokens", list_tokens, ["GET"]),
        route(ctx, "/v1/tokens", create_token, ["POST"], write=True, status=201),
        route(ctx, "/v1/tokens/{id}", revoke_token, ["DELETE"], write=True),
        route(ctx, "/v1/users", list_users, ["GET"]),
        route(ctx, "/v1/users", create_user, ["POST"], write=True, status=201),
    ]
