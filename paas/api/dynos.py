"""/v1/apps/{app}/formation, dynos (ps, run, restart, stop) and logs."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.responses import StreamingResponse
from starlette.routing import BaseRoute, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from paas import apps, auth, dynos, formation, logs, oneoffs, releases, streams, terminals
from paas.api.apps import app_of, route
from paas.api.context import Context
from paas.api.handlers import Call
from paas.errors import Conflict, Invalid, PaasError
from paas.models import OneOffState

MAX_GRACE = 3600
MAX_LOG_WAIT = logs.MAX_WAIT


def show_formation(call: Call) -> list[dict[str, Any]]:
    return [{"type": row.type, "quantity": row.quantity, "size": row.size}
            for row in formation.for_app(call.db, app_of(call))]


def update_formation(call: Call) -> list[dict[str, Any]]:
    """{"web": 2} scales; {"web": {"quantity": 2, "size": "standard"}} scales and resizes."""
    app = app_of(call)
    body = call.body
    if not isinstance(body, dict) or not body:
        raise Invalid('send {"web": 2, "worker": 1} or {"web": {"size": "standard"}}')
    quantities: dict[str, int] = {}
    sizes: dict[str, str] = {}
    for process_type, change in body.items():
        if isinstance(change, dict):
            change = dict(change)
            if "size" in change:
                sizes[process_type] = str(change.pop("size"))
            if "quantity" in change:
                change = change.pop("quantity")
            elif not change:
                continue
        if isinstance(change, bool) or not isinstance(change, int):
            raise Invalid(f'{process_type}: send a quantity (e.g. {{"{process_type}": 2}})')
        quantities[process_type] = change
    declared = releases.declared_types(call.db, app)
    if sizes:
        formation.resize(call.db, app, declared, sizes)
    if quantities:
        formation.scale(call.db, app, declared, quantities)
    return show_formation(call)


def list_dynos(call: Call) -> list[dict[str, Any]]:
    return dynos.listing(call.db, app_of(call))


def run_oneoff(call: Call) -> dict[str, Any]:
    app = app_of(call)
    body = call.body or {}
    command, env = body.get("command"), body.get("env") or {}
    if not isinstance(command, str):
        raise Invalid('send {"command": "python manage.py migrate"}')
    if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
        raise Invalid('"env" must map names to strings')
    oneoff = oneoffs.run(call.db, app, releases.current(call.db, app), command,
                         attach=bool(body.get("attach")), tty=bool(body.get("tty")),
                         size=str(body.get("size") or "basic"), env=env)
    call.events.app_log(app.name, "paas[api]", f"Starting process with command `{command}` "
                        f"by user {call.user.email} as {oneoff.type}.{oneoff.number}")
    return oneoffs.to_dict(oneoff)


def show_oneoff(call: Call) -> dict[str, Any]:
    return oneoffs.to_dict(oneoffs.get(call.db, app_of(call), call.params["name"]))


def attach(call: Call) -> StreamingResponse:
    """An attached one-off's output as NDJSON: {"line": ...} ... then {"exit_code": N}.
    ?stdin=1: the caller sends the one-off's stdin (POST .../input); otherwise its stdin
    ends here."""
    app = app_of(call)
    oneoff = oneoffs.get(call.db, app, call.params["name"])
    name = f"{oneoff.type}.{oneoff.number}"
    ctx, app_name = call.ctx, app.name
    if call.query.get("stdin") != "1" and not oneoff.tty:
        streams.send_input(ctx.redis, app_name, name, streams.Hangup())
    async def stream() -> AsyncIterator[bytes]:
        quiet = 0
        async for item in streams.follow(ctx.aredis, streams.run_stream(app_name, name)):
            entry = item[1] if item else None
            if isinstance(entry, streams.OutputLine):
                yield (json.dumps({"line": entry.text}) + "\n").encode()
                continue
            if isinstance(entry, streams.RunEnd):
                yield (json.dumps({"exit_code": entry.exit_code}) + "\n").encode()
                return
            if entry is not None:  # a terminal's bytes: this one-off has none
                continue
            yield b"\n"  # a heartbeat: the client's connection stays open
            done = await run_in_threadpool(_exited, ctx, app_name, name)
            quiet = quiet + 1 if done else 0
            if done and quiet > 2:  # exited, and the agent wrote no end marker: it failed
                yield (json.dumps({"line": done["output_tail"]}) + "\n").encode()
                yield (json.dumps({"exit_code": done["exit_code"]}) + "\n").encode()
                return

    return StreamingResponse(stream(), media_type="application/x-ndjson")


def send_input(call: Call) -> dict[str, Any]:
    """{"data": BASE64} or {"eof": true}: the stdin of an attached one-off without a terminal
    (`echo hi | paas run -- cat`), to its input stream (the monitor in paas/runtime/piped.py)."""
    app = app_of(call)
    oneoff = oneoffs.get(call.db, app, call.params["name"])
    name, body = f"{oneoff.type}.{oneoff.number}", call.body
    if not oneoff.attach or oneoff.tty:
        raise Invalid(f"{name} takes no input this way: it is detached or has a terminal")
    if oneoff.state == OneOffState.EXITED:
        raise Conflict(f"{name} has exited")
    streams.send_input(call.ctx.redis, app.name, name, _input_entry(body))
    return {"dyno": name}


def _input_entry(body: Any) -> streams.Keys | streams.Hangup:
    if isinstance(body, dict) and body.get("eof") is True:
        return streams.Hangup()
    data = body.get("data") if isinstance(body, dict) else None
    try:
        if not isinstance(data, str):
            raise ValueError
        return streams.Keys(base64.b64decode(data, validate=True))
    except (ValueError, binascii.Error):
        raise Invalid('send {"data": "BASE64"} (the next bytes of stdin) or {"eof": true} '
                      "(its end)") from None


def _exited(ctx: Context, app_name: str, name: str) -> dict[str, Any] | None:
    """The one-off as the database knows it, once it has exited."""
    with ctx.read() as db:
        found = oneoffs.get(db, apps.by_name(db, app_name), name)
        return oneoffs.to_dict(found) if found.state == OneOffState.EXITED else None


def _terminal_oneoff(ctx: Context, token: str | None, app_name: str, name: str) -> None:
    with ctx.read() as db:
        app = apps.get(db, app_name, auth.token_row(db, token).user)
        if not oneoffs.get(db, app, name).tty:
            raise Invalid(f"{name} has no terminal: read its output with GET (NDJSON)")


async def terminal(websocket: WebSocket) -> None:
    """The WebSocket at .../attach: a one-off's terminal (protocol in paas/terminals.py)."""
    ctx: Context = websocket.app.state.ctx
    app_name, name = websocket.path_params["app"], websocket.path_params["name"]
    scheme, _, token = websocket.headers.get("authorization", "").partition(" ")
    await websocket.accept()
    try:
        await run_in_threadpool(_terminal_oneoff, ctx, token.strip() if scheme.lower() ==
                                "bearer" else None, app_name, name)
    except PaasError as error:
        await websocket.send_json({"error": error.message})
        await websocket.close(4000 + error.status)
        return
    await streams.send_input_async(ctx.aredis, app_name, name, streams.Attached())
    output = asyncio.create_task(_relay_output(websocket, ctx, app_name, name))
    typing = asyncio.create_task(_relay_input(websocket, ctx, app_name, name))
    done, pending = await asyncio.wait({output, typing}, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    if typing in done:  # the user went away first: the terminal hangs up
        await streams.send_input_async(ctx.aredis, app_name, name, streams.Hangup())
        return
    with contextlib.suppress(RuntimeError, WebSocketDisconnect):
        await websocket.close()


async def _relay_output(websocket: WebSocket, ctx: Context, app_name: str, name: str) -> None:
    quiet = 0
    async for item in streams.follow(ctx.aredis, streams.run_stream(app_name, name)):
        if item is None:
            done = await run_in_threadpool(_exited, ctx, app_name, name)
            quiet = quiet + 1 if done else 0
            if done and quiet > 2:  # exited, and the agent wrote no end marker: it failed
                await websocket.send_bytes((done["output_tail"] + "\r\n").encode())
                await websocket.send_json({"exit_code": done["exit_code"]})
                return
            continue
        entry = item[1]
        if isinstance(entry, streams.RunEnd):
            await websocket.send_json({"exit_code": entry.exit_code})
            return
        if data := terminals.screen_bytes(entry):
            await websocket.send_bytes(data)


async def _relay_input(websocket: WebSocket, ctx: Context, app_name: str, name: str) -> None:
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        entry: streams.Keys | streams.WindowSize | None
        if message.get("bytes"):
            entry = streams.Keys(message["bytes"])
        else:
            entry = terminals.window_size(message.get("text") or "")
        if entry:
            await streams.send_input_async(ctx.aredis, app_name, name, entry)


def restart(call: Call) -> dict[str, Any]:
    """{"target": null | "web" | "web.1"}: restart every dyno, a type, or one dyno."""
    app = app_of(call)
    target = (call.body or {}).get("target")
    declared = releases.declared_types(call.db, app)
    process_type, _, index = (target or "").partition(".")
    if index and not index.isdigit():
        raise Invalid(f"{target!r} is neither a process type nor a dyno name (web.1)")
    formation.restart(call.db, app, declared, process_type or None,
                      int(index) if index else None)
    return {"restarting": target or "all"}


def stop(call: Call) -> dict[str, Any]:
    app = app_of(call)
    outcome = dynos.stop(call.db, app, call.params["name"])
    return {"dyno": call.params["name"], "outcome": outcome}


def show_settings(call: Call) -> dict[str, Any]:
    app = app_of(call)
    return {"stop_grace": app.stop_grace, "default_stop_grace": call.ctx.settings.stop_grace}


def update_settings(call: Call) -> dict[str, Any]:
    app = app_of(call)
    grace = (call.body or {}).get("stop_grace")
    if grace is not None and (isinstance(grace, bool) or not isinstance(grace, int | float)
                              or not 0 <= grace <= MAX_GRACE):
        raise Invalid(f"stop_grace must be a number of seconds from 0 to {MAX_GRACE} "
                      "(or null for the platform's default)")
    app.stop_grace = grace
    return show_settings(call)


def show_logs(call: Call) -> list[dict[str, str]]:
    """?num=N&ps=web.1&source=app|router|paas&after=STREAM_ID&wait=SECONDS (long poll)."""
    app = app_of(call)
    query = call.query
    try:
        count = min(int(query.get("num") or query.get("lines") or 100),
                    call.ctx.settings.log_lines)
        wait = max(0.0, min(float(query.get("wait", 0)), MAX_LOG_WAIT))
    except ValueError:
        raise Invalid("num and wait must be numbers") from None
    wanted = logs.LogFilter(dyno=query.get("ps") or None, source=query.get("source") or None)
    if query.get("after"):
        return logs.after(call.ctx.redis, app.name, query["after"], wanted, wait)
    return logs.recent_filtered(call.ctx.redis, app.name, count, wanted,
                                call.ctx.settings.log_lines)


def routes(ctx: Context) -> list[BaseRoute]:
    return [
        route(ctx, "/v1/apps/{app}/formation", show_formation, ["GET"]),
        route(ctx, "/v1/apps/{app}/formation", update_formation, ["PATCH"], write=True),
        route(ctx, "/v1/apps/{app}/dynos", list_dynos, ["GET"]),
        route(ctx, "/v1/apps/{app}/dynos", run_oneoff, ["POST"], write=True, status=201),
        route(ctx, "/v1/apps/{app}/dynos/restart", restart, ["POST"], write=True),
        route(ctx, "/v1/apps/{app}/dynos/{name}", show_oneoff, ["GET"]),
        route(ctx, "/v1/apps/{app}/dynos/{name}/attach", attach, ["GET"]),
        WebSocketRoute("/v1/apps/{app}/dynos/{name}/attach", terminal),
        route(ctx, "/v1/apps/{app}/dynos/{name}/stop", stop, ["POST"], write=True),
        route(ctx, "/v1/apps/{app}/dynos/{name}/input", send_input, ["POST"], write=True),
        route(ctx, "/v1/apps/{app}/ps-settings", show_settings, ["GET"]),
        route(ctx, "/v1/apps/{app}/ps-settings", update_settings, ["PATCH"], write=True),
        route(ctx, "/v1/apps/{app}/logs", show_logs, ["GET"]),
    ]
