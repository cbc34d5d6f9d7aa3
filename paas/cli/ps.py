"""ps, ps:scale, ps:resize, ps:restart, ps:stop, ps:set, run and logs."""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
import sys
import threading
import time
from typing import Any

import click
import httpx

from paas.cli import connection, terminal
from paas.cli.main import app_option, cli, json_option
from paas.cli.output import emit_json, table
from paas.client import ApiClient
from paas.errors import Invalid, PaasError, Unavailable

SCALE = re.compile(r"^([A-Za-z0-9_-]+)=(\d+)$")
RESIZE = re.compile(r"^([A-Za-z0-9_-]+)=([A-Za-z0-9-]+)$")
ENV = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", re.DOTALL)
TAIL_WAIT = 10
STDIN_CHUNK = 65536


def uptime(started_at: float) -> str:
    seconds = max(0, int(time.time() - started_at))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


@cli.command("ps")
@app_option
@json_option
def ps(app: str, as_json: bool) -> None:
    """List an app's dynos: state, release, node, uptime, restarts, memory."""
    dynos = connection.client().get(f"/v1/apps/{app}/dynos")
    if as_json:
        return emit_json(dynos)
    if not dynos:
        click.echo(f"No dynos on {app}: push code, or scale up (paas ps:scale web=1)")
        return
    table([_ps_row(d) for d in dynos],
          ["DYNO", "STATE", "RELEASE", "NODE", "UPTIME", "RESTARTS", "MEMORY"])
    for dyno in dynos:
        if dyno["state"] == "waiting":  # no node has room for it
            click.echo(f"{dyno['name']}: {dyno['reason']}")


def _ps_row(dyno: dict[str, Any]) -> tuple[Any, ...]:
    if dyno["state"] == "waiting":
        return dyno["name"], "waiting", "", "", "", "", ""
    return (dyno["name"], dyno["state"], f"v{dyno['release']}", dyno.get("node") or "",
            uptime(dyno["started_at"]), dyno["restarts"],
            f"{dyno['memory_mb']:.0f} MB" if dyno["state"] == "up" else "")


def _pairs(changes: tuple[str, ...], pattern: re.Pattern[str], example: str) -> dict[str, str]:
    found = {}
    for change in changes:
        match = pattern.fullmatch(change)
        if not match:
            raise Invalid(f"{change!r} is not TYPE={example.split('=')[1]} (e.g. {example})")
        found[match.group(1)] = match.group(2)
    return found


def _formation_line(formation: list[dict[str, Any]]) -> str:
    return ", ".join(f"{f['type']} at {f['quantity']}:{f['size']}" for f in formation)


@cli.command("ps:scale")
@click.argument("changes", nargs=-1, required=True)
@app_option
def ps_scale(changes: tuple[str, ...], app: str) -> None:
    """Scale process types: web=2 worker=1."""
    body = {t: int(n) for t, n in _pairs(changes, SCALE, "web=2").items()}
    formation = connection.client().patch(f"/v1/apps/{app}/formation", body)
    click.echo(f"Scaling dynos... done, now running {_formation_line(formation)}")


@cli.command("ps:resize")
@click.argument("changes", nargs=-1, required=True)
@app_option
def ps_resize(changes: tuple[str, ...], app: str) -> None:
    """Set the dyno size of process types: web=standard (memory, CPU share, pids, disk).

    \b
    Sizes (memory / disk): eco 256 MB / 128 MB, basic 512 MB / 256 MB,
    standard 1 GB / 512 MB, performance 2 GB / 1 GB.
    A dyno's disk is memory (tmpfs, emptied when the dyno ends): files written to /app or
    /tmp count against the dyno's memory limit with its processes (Heroku's R14; here the
    kernel kills a process once over it: R15).
    """
    body = {t: {"size": s} for t, s in _pairs(changes, RESIZE, "web=standard").items()}
    formation = connection.client().patch(f"/v1/apps/{app}/formation", body)
    click.echo(f"Resizing dynos and restarting them... done, now running "
               f"{_formation_line(formation)}")


@cli.command("ps:restart")
@click.argument("target", required=False)
@app_option
def ps_restart(target: str | None, app: str) -> None:
    """Restart all dynos, a process type (web) or one dyno (web.1)."""
    connection.client().post(f"/v1/apps/{app}/dynos/restart", {"target": target})
    click.echo(f"Restarting {target + ' ' if target else ''}dynos on {app}... done")


@cli.command("ps:stop")
@click.argument("dyno")
@app_option
def ps_stop(dyno: str, app: str) -> None:
    """Stop one dyno (run.1 for good; a formation dyno is started again)."""
    result = connection.client().post(f"/v1/apps/{app}/dynos/{dyno}/stop")
    click.echo(f"Stopping {dyno} dyno on {app}... {result['outcome']}")


@cli.command("ps:set")
@click.argument("setting")
@app_option
def ps_set(setting: str, app: str) -> None:
    """Set stop-timeout-seconds=N: the grace between SIGTERM and SIGKILL for the app's dynos
    ("default" for the platform's)."""
    name, _, value = setting.partition("=")
    if name != "stop-timeout-seconds" or not value:
        raise Invalid("the setting is stop-timeout-seconds=N (e.g. stop-timeout-seconds=10)")
    try:
        grace = None if value == "default" else float(value)
    except ValueError:
        raise Invalid(f"{value!r} is not a number of seconds") from None
    result = connection.client().patch(f"/v1/apps/{app}/ps-settings", {"stop_grace": grace})
    shown = result["stop_grace"] if result["stop_grace"] is not None else (
        f"{result['default_stop_grace']:g} (the platform's default)")
    click.echo(f"Setting stop-timeout-seconds on {app}... done, now {shown}")


@cli.command("run", context_settings={"ignore_unknown_options": True})
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@app_option
@click.option("-d", "--detach", is_flag=True, help="run in the background; output in the logs")
@click.option("-s", "--size", default="basic", show_default=True, help="the dyno size")
@click.option("-e", "--env", "env", multiple=True, help="KEY=VALUE for this dyno only")
def run(command: tuple[str, ...], app: str, detach: bool, size: str, env: tuple[str, ...]) -> None:
    """Run a one-off dyno with the app's current release: paas run -a APP -- CMD ARGS."""
    line = command[0] if len(command) == 1 else shlex.join(command)
    extra = {}
    for pair in env:
        match = ENV.fullmatch(pair)
        if not match:
            raise Invalid(f"{pair!r} is not KEY=VALUE")
        extra[match.group(1)] = match.group(2)
    api = connection.client()
    with_tty = not detach and terminal.has_terminal()
    if with_tty and os.environ.get("TERM"):
        extra.setdefault("TERM", os.environ["TERM"])
    oneoff = api.post(f"/v1/apps/{app}/dynos", {"command": line, "attach": not detach,
                                                 "tty": with_tty, "size": size, "env": extra})
    name = oneoff["name"]
    if detach:
        click.echo(f"Running `{line}` on {app}... up, {name}")
        click.echo(f"Run `paas logs -a {app} --ps {name}` to see its output.")
        return
    click.echo(f"Running `{line}` on {app}... up, {name}", err=True)
    if with_tty:
        sys.exit(terminal.attach(api.base_url, connection.token(), app, name))
    threading.Thread(target=_forward_stdin, args=(connection.client(), app, name),
                     daemon=True).start()
    sys.exit(_attach(api, app, name))


def _forward_stdin(api: ApiClient, app: str, name: str) -> None:
    """What is piped to `paas run` goes to the one-off's stdin, then its end (as with
    `heroku run`); the one-off's end ends the client whether or not its input has."""
    try:
        while chunk := os.read(sys.stdin.fileno(), STDIN_CHUNK):
            api.post(f"/v1/apps/{app}/dynos/{name}/input",
                     {"data": base64.b64encode(chunk).decode()})
        api.post(f"/v1/apps/{app}/dynos/{name}/input", {"eof": True})
    except (OSError, ValueError, PaasError):  # no stdin, or the one-off has ended
        return


def _attach(api: ApiClient, app: str, name: str) -> int:
    """Prints the one-off's output as it comes; returns its exit code."""
    try:
        with api.http.stream("GET", f"/v1/apps/{app}/dynos/{name}/attach?stdin=1",
                             timeout=httpx.Timeout(30, read=None)) as response:
            if response.status_code >= 400:
                response.read()
                raise PaasError(response.text)
            for raw in response.iter_lines():
                if not raw.strip():
                    continue
                message = json.loads(raw)
                if "line" in message:
                    click.echo(message["line"])
                elif message.get("exit_code") is None:
                    click.secho(f" !    {name} ended without an exit status", fg="red", err=True)
                    return 1
                else:
                    return int(message["exit_code"])
    except httpx.HTTPError as error:
        raise Unavailable(f"lost the connection to {name} ({error}); it keeps running: "
                          f"paas logs -a {app} --ps {name}") from None
    return 1


def _print_log(entry: dict[str, str]) -> None:
    if not entry.get("skip"):
        click.echo(f"{entry.get('time', '')} {entry.get('source', '')}: {entry.get('line', '')}")


def _first_lines(api: ApiClient, app: str, params: dict[str, Any], tail: bool
                 ) -> list[dict[str, Any]]:
    """The newest lines; a tail started while the platform restarts waits for it, as the
    tail itself does."""
    while True:
        try:
            return api.get(f"/v1/apps/{app}/logs", params=params)
        except Unavailable:
            if not tail:
                raise
            time.sleep(1)


@cli.command("logs")
@app_option
@click.option("-n", "--num", default=100, show_default=True, help="how many lines")
@click.option("-p", "--ps", "dyno", help="only this dyno (web.1) or process type (web)")
@click.option("-s", "--source", type=click.Choice(["app", "router", "paas"]),
              help="only lines from the app, the router or the platform")
@click.option("-t", "--tail", is_flag=True, help="keep printing new lines as they come")
@json_option
def logs(app: str, num: int, dyno: str | None, source: str | None, tail: bool,
         as_json: bool) -> None:
    """Show an app's log: TIMESTAMP SOURCE[DYNO]: LINE."""
    api = connection.client()
    params: dict[str, Any] = {"num": num, "ps": dyno or "", "source": source or ""}
    lines = _first_lines(api, app, params, tail)
    if as_json and not tail:
        return emit_json(lines)
    for entry in lines:
        _print_log(entry)
    last = lines[-1]["id"] if lines else "$"
    while tail:
        try:
            batch = api.get(f"/v1/apps/{app}/logs",
                            params={**params, "after": last, "wait": TAIL_WAIT})
        except Unavailable:  # the platform restarting (API, Redis): keep tailing after it
            time.sleep(1)
            continue
        for entry in batch:
            _print_log(entry)
            last = entry["id"]
        sys.stdout.flush()
