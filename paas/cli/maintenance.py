"""maintenance, maintenance:on, maintenance:off."""

from __future__ import annotations

import click

from paas.cli import connection
from paas.cli.main import app_option, cli


@cli.command("maintenance")
@app_option
def maintenance_show(app: str) -> None:
    """Show whether the app is in maintenance mode."""
    state = connection.client().get(f"/v1/apps/{app}/maintenance")
    click.echo("on" if state["maintenance"] else "off")


@cli.command("maintenance:on")
@app_option
def maintenance_on(app: str) -> None:
    """Answer every request with a maintenance page (503, H80); the dynos keep running."""
    connection.client().put(f"/v1/apps/{app}/maintenance", {"maintenance": True})
    click.echo(f"Enabling maintenance mode for {app}... done")


@cli.command("maintenance:off")
@app_option
def maintenance_off(app: str) -> None:
    """Route requests to the app's dynos again."""
    connection.client().put(f"/v1/apps/{app}/maintenance", {"maintenance": False})
    click.echo(f"Disabling maintenance mode for {app}... done")
