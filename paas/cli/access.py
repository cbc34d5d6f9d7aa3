"""access, access:add and access:remove: an app's owner and collaborators."""

from __future__ import annotations

from urllib.parse import quote

import click

from paas.cli import connection
from paas.cli.main import app_option, cli, json_option
from paas.cli.output import emit_json, heading, table


def _quoted(email: str) -> str:
    return quote(email, safe="@")


@cli.command("access")
@app_option
@json_option
def access_list(app: str, as_json: bool) -> None:
    """List who may see and change an app."""
    people = connection.client().get(f"/v1/apps/{app}/collaborators")
    if as_json:
        return emit_json(people)
    heading(f"{app} Access List")
    table([(p["email"], p["role"]) for p in people], ["EMAIL", "ROLE"])


@cli.command("access:add")
@click.argument("email")
@app_option
def access_add(email: str, app: str) -> None:
    """Let a user (by email) see and change an app (owner)."""
    connection.client().post(f"/v1/apps/{app}/collaborators", {"email": email})
    click.echo(f"Adding {email} access to the app {app}... done")


@cli.command("access:remove")
@click.argument("email")
@app_option
def access_remove(email: str, app: str) -> None:
    """Take a collaborator off an app (owner, or yourself)."""
    connection.client().delete(f"/v1/apps/{app}/collaborators/{_quoted(email)}")
    click.echo(f"Removing {email} access from the app {app}... done")
