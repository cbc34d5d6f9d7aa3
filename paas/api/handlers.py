"""Turns a plain function of (Call) into a Starlette endpoint: auth, JSON in and out, one
transaction, errors as `{"id", "message"}` with their status."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from paas import auth
from paas.api.context import Context
from paas.errors import Invalid, PaasError, TooLarge, Unavailable
from paas.events import Events
from paas.logs import BufferedEvents
from paas.models import User

MAX_BODY = 1024 * 1024


@dataclass
class Call:
    ctx: Context
    db: Session
    events: Events
    user: User
    params: dict[str, Any]
    query: dict[str, str]
    body: Any = field(default=None)
    # The id of the token this request came with (None for anonymous endpoints).
    token_id: int | None = field(default=None)


Handler = Callable[[Call], Any]


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


async def _read_body(request: Request) -> bytes:
    """The body, read piece by piece: refused as soon as it is over MAX_BODY, so a huge body
    costs the API no more than MAX_BODY of memory."""
    too_large = TooLarge("the request body is over 1 MiB")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        raise too_large
    raw = bytearray()
    async for piece in request.stream():
        raw += piece
        if len(raw) > MAX_BODY:
            raise too_large
    return bytes(raw)


async def _read_json(request: Request) -> Any:
    raw = await _read_body(request)
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError as error:
        raise Invalid(f"the request body is not JSON: {error}") from None


def error_response(error: PaasError) -> JSONResponse:
    return JSONResponse({"id": error.id, "message": error.message}, status_code=error.status)


def endpoint(ctx: Context, handler: Handler, *, write: bool = False, service: bool = False,
             status: int = 200, anonymous: bool = False,
             wakes_agents: bool = True) -> Callable[[Request], Any]:
    """`anonymous` endpoints run without a token (Call.user is then None). A `write` endpoint
    tells the agents that what their nodes should run may have changed (`paas/notify.py`),
    unless `wakes_agents` is False (the agents' own calls: they would wake themselves)."""

    def run(token: str | None, params: dict, query: dict, body: Any) -> Any:
        def work(db: Session, events: Events) -> Any:
            row = None if anonymous else auth.token_row(db, token)
            user = row.user if row else None
            if service:
                auth.require_service(user)
            result = handler(Call(ctx, db, events, user, params, query, body,  # type: ignore[arg-type]
                                  row.id if row else None))
            if write and wakes_agents:
                events.desired_changed()
            return result

        if write:
            return ctx.write(work)
        with ctx.read() as db:
            return work(db, BufferedEvents())

    async def wrapped(request: Request) -> Response:
        try:
            body = await _read_json(request) if request.method in ("POST", "PUT", "PATCH") else None
            result = await run_in_threadpool(run, bearer_token(request),
                                             dict(request.path_params),
                                             dict(request.query_params), body)
        except PaasError as error:
            return error_response(error)
        except redis.RedisError:
            return error_response(Unavailable("the platform's Redis is not answering (it may be "
                                              "restarting): try again in a moment"))
        if isinstance(result, Response):
            return result
        return JSONResponse(result, status_code=status)

    # read by paas/api/openapi.py
    wrapped.auth = "none" if anonymous else "service" if service else "user"  # type: ignore[attr-defined]
    wrapped.handler = handler  # type: ignore[attr-defined]
    wrapped.status = status  # type: ignore[attr-defined]
    return wrapped
