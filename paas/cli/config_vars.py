"""config, config:get, config:set, config:unset (and `env` as an alias)."""

from __future__ import annotations

import shlex

import click

from paas.cli import connection
from paas.cli.main import add_alias, app_option, cli, json_option
from paas.cli.output import emit_json, heading
from paas.errors import Invalid


@cli.command("config")
@app_option
@json_option
@click.option("--shell", is_flag=True, help="print KEY=value lines for a shell")
def config_show(app: str, as_json: bool, shell: bool) -> None:
    """Show an app's config vars (`paas env` is the same; so are env:get, env:set...)."""
    config = connection.client().get(f"/v1/apps/{app}/config")
    if as_json:
        return emit_json(config)
    if shell:
        for key, value in config.items():
            click.echo(f"{key}={shlex.quote(value)}")
        return
    heading(f"{app} Config Vars")
    width = max((len(k) for k in config), default=0) + 1
    for key, value in config.items():
        click.echo(f"{key + ':':<{width}} {value}")


@cli.command("config:get")
@click.argument("key")
@app_option
def config_get(key: str, app: str) -> None:
    """Print one config var's value."""
    config = connection.client().get(f"/v1/apps/{app}/config")
    if key not in config:
        raise Invalid(f"{app} has no config var {key}")
    click.echo(config[key])


@cli.command("config:set")
@click.argument("pairs", nargs=-1, required=True)
@app_option
@click.option("--no-restart", is_flag=True, help="store only; dynos get it on the next deploy")
def config_set(pairs: tuple[str, ...], app: str, no_restart: bool) -> None:
    """Set config vars: KEY=VALUE [KEY2=VALUE2 ...]. Makes a new release."""
    changes: dict[str, str | None] = {}
    for position, pair in enumerate(pairs, 1):
        key, sep, value = pair.partition("=")
        if not sep:
            # never echo it: a value pasted without its KEY= is likely a secret
            raise Invalid(f"argument {position} is not KEY=VALUE (e.g. DATABASE_URL=...)")
        changes[key] = value
    _apply(app, changes, no_restart)


@cli.command("config:unset")
@click.argument("keys", nargs=-1, required=True)
@app_option
@click.option("--no-restart", is_flag=True, help="store only; dynos get it on the next deploy")
def config_unset(keys: tuple[str, ...], app: str, no_restart: bool) -> None:
    """Unset config vars. Makes a new release."""
    _apply(app, dict.fromkeys(keys), no_restart)


def _apply(app: str, changes: dict[str, str | None], no_restart: bool) -> None:
    params = {"restart": "false"} if no_restart else {}
    names = ", ".join(changes)
    verb = "Setting" if any(v is not None for v in changes.values()) else "Unsetting"
    then = "" if no_restart else " and restarting"
    click.echo(f"{verb} {names}{then} {app}... ", nl=False)
    result = connection.client().patch(f"/v1/apps/{app}/config", changes, params=params)
    release = result["release"]
    click.echo(f"done, v{release}" if release else "done (applies on the next deploy)")


for alias, command in (("env", config_show), ("env:get", config_get), ("env:set", config_set),
                       ("env:unset", config_unset)):
    add_alias(command, alias)
