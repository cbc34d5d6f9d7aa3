"""releases:info and rollback (`paas releases` itself is in main.py)."""

from __future__ import annotations

import click

from paas.cli import connection
from paas.cli.main import app_option, cli, json_option
from paas.cli.output import ago, emit_json, heading
from paas.errors import Invalid


def version_number(raw: str) -> int:
    digits = raw[1:] if raw[:1] in ("v", "V") else raw
    if not digits.isdigit():
        raise Invalid(f"{raw!r} is not a release version: use v3 or 3 (`paas releases`)")
    return int(digits)


@cli.command("releases:info")
@click.argument("version")
@app_option
@json_option
def releases_info(version: str, app: str, as_json: bool) -> None:
    """Show one release: vN (or N)."""
    number = version_number(version)
    release = connection.client().get(f"/v1/apps/{app}/releases/{number}")
    if as_json:
        return emit_json(release)
    heading(f"Release v{release['version']}" + (" (current)" if release["current"] else ""))
    for label, value in (
            ("Change", release["description"]), ("By", release["created_by"] or "-"),
            ("When", ago(release["created_at"])), ("Status", release["status"]),
            ("Commit", release["commit"][:7] or "-"),
            ("Config", ", ".join(release["config_keys"]) or "none"),
            ("Error", release["error"])):
        if value:
            click.echo(f"{label + ':':<8} {value}")


@cli.command("rollback")
@click.argument("version", required=False)
@app_option
def rollback(version: str | None, app: str) -> None:
    """Roll back to release vN (default: the one before the current): its code and its
    config vars, as a new release, with no build."""
    target = version_number(version) if version else None
    click.echo(f"Rolling back {app}... ", nl=False)
    release = connection.client().post(f"/v1/apps/{app}/releases", {"rollback": target})
    click.echo(f"done, v{release['version']} ({release['description']})")
    click.echo("Rollback restores the code and the config vars of that release.")
