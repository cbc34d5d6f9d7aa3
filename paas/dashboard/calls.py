"""Runs the API's own handlers for the signed-in user: the dashboard does what the CLI does,
through the same code, with the same checks and the same errors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from paas.api.context import Context
from paas.api.handlers import Call
from paas.dashboard.sessions import DashboardSession, token_of
from paas.events import Events
from paas.logs import BufferedEvents

T = TypeVar("T")


def _run(ctx: Context, session: DashboardSession, work: Callable[[Call], T],
         params: dict[str, Any], query: dict[str, str], body: Any, write: bool) -> T:
    def in_transaction(db: Session, events: Events) -> T:
        row = token_of(db, session)
        result = work(Call(ctx, db, events, row.user, params, query, body, row.id))
        if write:  # as the API's write endpoints do (paas/api/handlers.py)
            events.desired_changed()
        return result

    if write:
        return ctx.write(in_transaction)
    with ctx.read() as db:
        return in_transaction(db, BufferedEvents())


async def call(ctx: Context, session: DashboardSession, work: Callable[[Call], T], *,
               params: dict[str, Any] | None = None, query: dict[str, str] | None = None,
               body: Any = None, write: bool = False) -> T:
    """`work` is an API handler, or a function calling a few of them with one Call (one
    transaction); PaasErrors pass through to the view."""
    return await run_in_threadpool(_run, ctx, session, work, params or {}, query or {}, body,
                                   write)
