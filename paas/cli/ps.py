"""ps, ps:scale and logs."""

from __future__ import annotations

import re

import click

from paas.cli import connection
from paas.cli.main import app_option, cli, json_option
from paas.cli.output import ago, emit_json, table
from paas.errors import Invalid

SCALE = re.compile(r"^([A-Za-z0-9_-]+)=(\d+)$")


@cli.command("ps")
@app_option
@json_option
def ps(app: str, as_json: bool) -> None:
    """List an app's dynos."""
    dynos = connection.client().get(f"/v1/apps/{app}/dynos")
    if as_json:
        return emit_json(dynos)
    table([(d["name"], d["state"], f"v{d['release']}", ago(d["started_at"]), d["restarts"])
           for d in dynos], ["DYNO", "STATE", "RELEASE", "STARTED", "RESTARTS"])


@cli.command("ps:scale")
@click.argument("changes", nargs=-1, required=True)
@app_option
def ps_scale(changes: tuple[str, ...], app: str) -> None:
    """Scale process types: web=2 worker=1."""
    body = {}
    for change in changes:
        match = SCALE.fullmatch(change)
        if not match:
            raise Invalid(f"{change!r} is not TYPE=QUANTITY (e.g. web=2)")
        body[match.group(1)] = int(match.group(2))
    formation = connection.client().patch(f"/v1/apps/{app}/formation", body)
    click.echo("Scaling dynos... done, now running "
               + ", ".join(f"{f['type']} at {f['quantity']}" for f in formation))


@cli.command("logs")
@app_option
@click.option("-n", "--num", default=100, show_default=True, help="how many lines")
@json_option
def logs(app: str, num: int, as_json: bool) -> None:
    """Show an app's recent log lines."""
    lines = connection.client().get(f"/v1/apps/{app}/logs", params={"lines": num})
    if as_json:
        return emit_json(lines)
    for entry in lines:
        click.echo(f"{entry.get('source', '')}: {entry.get('line', '')}")
