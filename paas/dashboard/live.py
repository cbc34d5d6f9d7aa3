"""Server-sent events: a build's output (`build:<id>`) and an app's log (`logs:<app>`) as
they arrive in Redis. Each event's id is the stream entry id, so a reconnecting browser
(Last-Event-ID) resumes where it left off."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import redis.asyncio as aredis
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse

from paas import logs, streams
from paas.api import apps as apps_api
from paas.api import slugs as slugs_api
from paas.dashboard.calls import call
from paas.dashboard.web import Site
from paas.errors import PaasError

# A comment line every few seconds keeps proxies from closing a quiet stream.
KEEPALIVE_EVERY = 10
SSE_HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}


def event(data: Any, entry_id: str | None = None, name: str | None = None) -> str:
    head = (f"id: {entry_id}\n" if entry_id else "") + (f"event: {name}\n" if name else "")
    return f"{head}data: {json.dumps(data)}\n\n"


def log_time(entry_id: str) -> str:
    millis = int(entry_id.split("-")[0])
    return time.strftime("%H:%M:%S", time.gmtime(millis / 1000)) + f".{millis % 1000:03d}"


async def build_events(client: aredis.Redis, build_id: str, after: str) -> AsyncIterator[str]:
    quiet = 0
    async for item in streams.follow(client, streams.build_stream(build_id), after):
        if item is None:
            quiet += 1
            if quiet % KEEPALIVE_EVERY == 0:
                yield ": keepalive\n\n"
            continue
        entry_id, entry = item
        if isinstance(entry, streams.OutputLine):
            yield event(entry.text, entry_id)
        else:
            yield event({"ok": entry.ok, "message": entry.message}, entry_id, "end")
            return


async def log_events(client: aredis.Redis, app: str, after: str,
                     wanted: logs.LogFilter) -> AsyncIterator[str]:
    quiet = 0
    async for item in streams.follow(client, streams.app_log(app), after):
        if item is None:
            quiet += 1
            if quiet % KEEPALIVE_EVERY == 0:
                yield ": keepalive\n\n"
            continue
        entry_id, line = item
        if wanted.matches(line):
            yield event({"time": log_time(entry_id), "source": line.source, "line": line.text},
                        entry_id)


def _stream(body: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(body, media_type="text/event-stream", headers=SSE_HEADERS)


def routes(site: Site) -> tuple[Any, Any]:
    async def build_log(request: Request) -> Response:
        session = site.session(request)
        if not session.signed_in:
            return PlainTextResponse("sign in first", status_code=401)
        params = {"app": request.path_params["app"], "build": request.path_params["build"]}
        try:
            build = await call(site.ctx, session, slugs_api.show_build, params=params)
        except PaasError as error:
            return PlainTextResponse(error.message, status_code=error.status)
        after = request.headers.get("last-event-id") or "0"
        return _stream(build_events(site.ctx.aredis, build["id"], after))

    async def app_log(request: Request) -> Response:
        session = site.session(request)
        if not session.signed_in:
            return PlainTextResponse("sign in first", status_code=401)
        q = request.query_params
        try:
            app = await call(site.ctx, session, lambda c: apps_api.app_of(c).name,
                             params={"app": request.path_params["app"]})
        except PaasError as error:
            return PlainTextResponse(error.message, status_code=error.status)
        after = request.headers.get("last-event-id") or q.get("after") or "$"
        wanted = logs.LogFilter(dyno=q.get("ps") or None, source=q.get("source") or None)
        return _stream(log_events(site.ctx.aredis, app, after, wanted))

    return build_log, app_log

