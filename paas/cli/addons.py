"""addons, addons:create/info/attach/detach/upgrade/destroy/plans, pg:info, pg:psql,
pg:credentials:rotate and redis:cli (as the Heroku CLI spells them)."""

from __future__ import annotations

import shlex
import sys
import time
from typing import Any

import click

from paas.cli import connection
from paas.cli.main import app_option, cli, json_option
from paas.cli.output import ago, emit_json, heading, table
from paas.client import ApiClient
from paas.errors import Conflict, Invalid, Unavailable

PSQL = "/usr/lib/postgresql/15/bin/psql"
WAIT = 180.0


def _path(app: str, addon: str = "") -> str:
    return f"/v1/apps/{app}/addons" + (f"/{addon}" if addon else "")


@cli.command("addons")
@app_option
@json_option
def addons_list(app: str, as_json: bool) -> None:
    """List the add-ons attached to an app."""
    found = connection.client().get(_path(app))
    if as_json:
        return emit_json(found)
    table([(a["name"], a["plan"], a["state"], f"{a['as']}_URL",
            a["app"] if a["app"] != app else "(this app)") for a in found],
          ["NAME", "PLAN", "STATE", "AS", "OWNER"])


@cli.command("addons:plans")
@json_option
def addons_plans(as_json: bool) -> None:
    """List the add-on services and their plans."""
    found = connection.client().get("/v1/addons/plans")
    if as_json:
        return emit_json(found)
    table([(p["spec"] + (" (default)" if p["default"] else ""), f"{p['memory_mb']} MB",
            f"{p['disk_mb']} MB", p["connections"],
            f"{p['maxmemory_mb']} MB {p['policy']}" if p["maxmemory_mb"] else "-")
           for p in found], ["PLAN", "MEMORY", "DISK", "CONNECTIONS", "MAXMEMORY"])


@cli.command("addons:create")
@click.argument("spec")
@app_option
@click.option("--as", "as_name", help="attach as NAME: sets NAME_URL (default DATABASE, REDIS)")
@click.option("--name", help="the add-on's name (default APP-SERVICE)")
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="wait until the server answers and its config var is set")
@json_option
def addons_create(spec: str, app: str, as_name: str | None, name: str | None, wait: bool,
                  as_json: bool) -> None:
    """Create an add-on SERVICE[:PLAN] (postgres, redis:basic) and attach it to the app."""
    api = connection.client()
    click.echo(f"Creating {spec} on {app}... ", nl=False, err=True)
    addon = api.post(_path(app), {"plan": spec, "as": as_name, "name": name})
    if wait:
        addon = _wait_available(api, app, addon["name"])
    if as_json:
        return emit_json(addon)
    var = addon["attachments"][0]["config_var"] if addon["attachments"] else "?"
    click.echo(f"{addon['state']}", err=True)
    click.echo(f"{addon['name']} ({addon['plan']}) is {addon['state']}; attached as {var}"
               + ("" if addon["state"] == "available" else
                  f" once it is available (`paas addons:info {addon['name']}`)"))


def _wait_available(api: ApiClient, app: str, name: str) -> dict[str, Any]:
    """Polls until the add-on is available and its config vars are set; progress as dots."""
    deadline = time.monotonic() + WAIT
    while True:
        addon = api.get(_path(app, name))
        pending = any(a["pending"] for a in addon["attachments"])
        if addon["state"] == "available" and not pending:
            _wait_released(api, app, deadline)
            return addon
        if addon["state"] == "crashed" and addon["reason"]:
            click.echo("", err=True)
            click.echo(f"       {addon['name']}'s server is not up yet: {addon['reason']}",
                       err=True)
        if time.monotonic() > deadline:
            raise Unavailable(f"{name} is still {addon['state']} after {WAIT:.0f} s: "
                              f"`paas addons:info {name} -a {app}` shows why")
        click.echo(".", nl=False, err=True)
        time.sleep(1)


def _wait_released(api: ApiClient, app: str, deadline: float) -> None:
    """The release with the config var live (its release phase passed, its dynos up)."""
    while api.get(f"/v1/apps/{app}")["pending_release"] is not None:
        if time.monotonic() > deadline:
            raise Unavailable(f"{app}'s release with the add-on's config var is not live yet: "
                              f"`paas releases -a {app}` shows it")
        click.echo(".", nl=False, err=True)
        time.sleep(0.5)


@cli.command("addons:info")
@click.argument("addon")
@app_option
@json_option
def addons_info(addon: str, app: str, as_json: bool) -> None:
    """Show an add-on: plan, limits, state, attachments."""
    found = connection.client().get(_path(app, addon))
    if as_json:
        return emit_json(found)
    _print_addon(found)


def _print_addon(found: dict[str, Any]) -> None:
    heading(found["name"])
    limits = found["limits"]
    lines = [("Plan", found["plan"]), ("State", found["state"]
                                        + (f" ({found['reason']})" if found["reason"] else "")),
             ("Owner", found["app"]), ("Memory", f"{found['memory_mb']} MB of "
                                                 f"{limits['memory_mb']} MB"),
             ("Disk", f"{limits['disk_mb']} MB"), ("Conns", f"{limits['connections']} max"),
             ("Attached", ", ".join(f"{a['app']} as {a['config_var']}"
                                    for a in found["attachments"]) or "-"),
             ("Created", ago(found["created_at"]))]
    if limits["maxmemory_mb"]:
        lines.insert(5, ("Maxmemory", f"{limits['maxmemory_mb']} MB, {limits['policy']}"))
    for label, value in lines:
        click.echo(f"{label + ':':<11} {value}")


@cli.command("addons:attach")
@click.argument("addon")
@app_option
@click.option("--as", "as_name", help="attach as NAME: sets NAME_URL")
def addons_attach(addon: str, app: str, as_name: str | None) -> None:
    """Attach an existing add-on (another app's) to this app: a new release with its URL."""
    api = connection.client()
    click.echo(f"Attaching {addon} to {app}... ", nl=False)
    found = api.post(f"/v1/apps/{app}/addon-attachments", {"addon": addon, "as": as_name})
    _wait_released(api, app, time.monotonic() + WAIT)
    mine = [a for a in found["attachments"] if a["app"] == app]
    click.echo(f"done, as {mine[0]['config_var'] if mine else '?'}")


@cli.command("addons:detach")
@click.argument("addon")
@app_option
def addons_detach(addon: str, app: str) -> None:
    """Detach an add-on from this app: its access is revoked, its config var removed."""
    click.echo(f"Detaching {addon} from {app}... ", nl=False)
    api = connection.client()
    api.delete(f"/v1/apps/{app}/addon-attachments/{addon}")
    _wait_released(api, app, time.monotonic() + WAIT)
    click.echo("done")


@cli.command("addons:upgrade")
@click.argument("addon")
@click.argument("plan")
@app_option
def addons_upgrade(addon: str, plan: str, app: str) -> None:
    """Change an add-on's plan (its server restarts with the new limits; data kept)."""
    api = connection.client()
    click.echo(f"Changing {addon} to {plan}... ", nl=False, err=True)
    api.patch(_path(app, addon), {"plan": plan})
    found = _wait_available(api, app, addon)
    click.echo("done", err=True)
    click.echo(f"{found['name']} is on {found['plan']}")


@cli.command("addons:destroy")
@click.argument("addon")
@app_option
@click.option("--confirm", help="the owning app's name, to confirm")
@click.option("--purge", is_flag=True, help="delete its backups too (else the last is kept)")
def addons_destroy(addon: str, app: str, confirm: str | None, purge: bool) -> None:
    """Destroy an add-on: its server and its data (its last backup is kept unless --purge)."""
    click.echo(f"Destroying {addon} on {app}... ", nl=False)
    connection.client().delete(_path(app, addon), params={"confirm": confirm or "",
                                                          "purge": str(purge).lower()})
    click.echo("done")


@cli.command("pg:info")
@click.argument("addon", required=False)
@app_option
@json_option
def pg_info(addon: str | None, app: str, as_json: bool) -> None:
    """Show a Postgres add-on's version, size, connections and plan limits."""
    found = connection.client().get(_path(app, addon or "DATABASE") + "/pg-info")
    if as_json:
        return emit_json(found)
    _print_addon(found)
    server = found["server"]
    if server is None:
        click.echo(f"{'Server:':<11} not available ({found['state']})")
        return
    for label, value in (("Version", server["version"]),
                         ("Data size", f"{server['data_size_bytes'] / 1048576:.1f} MB"),
                         ("Tables", server["tables"]),
                         ("Connections", f"{server['connections']}/"
                                         f"{server['connection_limit']}"),
                         ("SSL", "on (sslmode=require)" if server["ssl"] else "off")):
        click.echo(f"{label + ':':<11} {value}")


def _config_var(api: ApiClient, app: str, addon: str | None, service: str) -> str:
    """The config var of the app's attachment of `addon` (default: its only one of
    `service`)."""
    found = api.get(_path(app))
    candidates = [a for a in found if a["service"] == service
                  and (addon is None or addon in (a["name"], a["as"], f"{a['as']}_URL"))]
    if not candidates:
        raise Invalid(f"{app} has no {service} add-on{f' {addon!r}' if addon else ''} "
                      f"attached: `paas addons -a {app}` lists them")
    if len(candidates) > 1 and addon is None:
        defaults = [a for a in candidates if a["as"] in ("DATABASE", "REDIS")]
        if len(defaults) != 1:
            raise Conflict(f"{app} has several {service} add-ons: name one")
        candidates = defaults
    return f"{candidates[0]['as']}_URL"


@cli.command("pg:psql")
@click.argument("addon", required=False)
@app_option
@click.option("-c", "--command", "sql", help="run this SQL and exit")
@click.pass_context
def pg_psql(ctx: click.Context, addon: str | None, app: str, sql: str | None) -> None:
    """An interactive psql on the app's database (a one-off dyno with a terminal, as the
    app's own user); stdin is forwarded without a terminal."""
    var = _config_var(connection.client(), app, addon, "postgres")
    line = f'{PSQL} -X "${var}"' + (f" -c {shlex.quote(sql)}" if sql else "")
    _run(ctx, app, line)


@cli.command("redis:cli")
@click.argument("addon", required=False)
@app_option
@click.pass_context
def redis_cli(ctx: click.Context, addon: str | None, app: str) -> None:
    """An interactive redis-cli on the app's Redis (a one-off dyno with a terminal)."""
    var = _config_var(connection.client(), app, addon, "redis")
    _run(ctx, app, f'redis-cli --no-auth-warning -u "${var}"')


def _run(ctx: click.Context, app: str, line: str) -> None:
    from paas.cli.ps import run

    ctx.invoke(run, command=(line,), app=app, detach=False, size="basic", env=())
    sys.exit(0)


@cli.command("pg:credentials:rotate")
@click.argument("addon", required=False)
@app_option
def pg_credentials_rotate(addon: str | None, app: str) -> None:
    """A new password for the database's app user: the server restarts, and each attached
    app's config var is updated in a new release."""
    api = connection.client()
    name = addon or "DATABASE"
    click.echo(f"Rotating the credentials of {name} on {app}... ", nl=False, err=True)
    found = api.post(_path(app, name) + "/credentials/rotate")
    _wait_available(api, app, found["name"])
    click.echo("done", err=True)
