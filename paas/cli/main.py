"""The `paas` command: every `noun:verb` is one or a few calls to the HTTP API."""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any

import click

from paas.cli import connection
from paas.cli.output import ago, emit_json, heading, table
from paas.errors import PaasError


class Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PaasError as error:
            click.secho(f" !    {error.message}", fg="red", err=True)
            sys.exit(1)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """paas: git push deploys to your own host."""


def app_option(f: Callable[..., Any]) -> Callable[..., Any]:
    @click.option("-a", "--app", "app", help="the app (default: from this dir's git remote)")
    @wraps(f)
    def wrapper(*args: Any, app: str | None, **kwargs: Any) -> Any:
        return f(*args, app=app or connection.app_from_git_remote(), **kwargs)

    return wrapper


def add_alias(command: click.Command, name: str) -> None:
    """Registers `command` under another name too, left out of the command list."""
    alias = copy.copy(command)
    alias.hidden = True
    cli.add_command(alias, name)


json_option = click.option("--json", "as_json", is_flag=True, help="print JSON")


@cli.command("help")
@click.argument("command", required=False)
@click.pass_context
def help_command(ctx: click.Context, command: str | None) -> None:
    """Show help for paas or for one COMMAND."""
    target = cli.get_command(ctx, command) if command else cli
    if target is None:
        raise click.UsageError(f"no command {command!r}; `paas help` lists them")
    parent = ctx.find_root() if command else None
    with click.Context(target, info_name=command or "paas", parent=parent) as sub:
        click.echo(target.get_help(sub))


@cli.command("apps")
@json_option
def apps_list(as_json: bool) -> None:
    """List your apps."""
    apps = connection.client().get("/v1/apps")
    if as_json:
        return emit_json(apps)
    table([(a["name"], f"v{a['current_release']}" if a["current_release"] else "-",
            a["web_url"]) for a in apps], ["NAME", "RELEASE", "WEB URL"])


@cli.command("apps:create")
@click.argument("name")
@json_option
def apps_create(name: str, as_json: bool) -> None:
    """Create an app NAME (a DNS label: lowercase letters, digits, dashes)."""
    api = connection.client()
    app = api.post("/v1/apps", {"name": name})
    if as_json:
        return emit_json(app)
    click.echo(f"Creating {name}... done")
    click.echo(f"{app['web_url']} | {api.base_url}/git/{name}.git")
    click.echo(f"Add it as a remote: paas git:remote -a {name}")


@cli.command("apps:destroy")
@click.argument("name")
@click.option("--confirm", help="the app's name again, to confirm")
def apps_destroy(name: str, confirm: str | None) -> None:
    """Destroy an app: its code, releases, dynos and config."""
    connection.client().delete(f"/v1/apps/{name}", params={"confirm": confirm or ""})
    click.echo(f"Destroying {name} (including all add-ons)... done")


@cli.command("apps:info")
@app_option
@json_option
def apps_info(app: str, as_json: bool) -> None:
    """Show an app's URL, release, formation and dynos."""
    info = connection.client().get(f"/v1/apps/{app}")
    if as_json:
        return emit_json(info)
    heading(app)
    release = info["current_release"]
    for label, value in (("Git URL", info["git_url"]), ("Web URL", info["web_url"]),
                         ("Release", f"v{release}" if release else "none (push code first)"),
                         ("Dynos", " ".join(f"{t}: {n}" for t, n in info["formation"].items())
                          or "none")):
        click.echo(f"{label + ':':<10} {value}")
    from paas.cli.domains import router_lines

    for label, value in router_lines(info):
        click.echo(f"{label + ':':<10} {value}")


@cli.command("builds")
@app_option
@json_option
def builds_list(app: str, as_json: bool) -> None:
    """List an app's builds, newest first."""
    builds = connection.client().get(f"/v1/apps/{app}/builds")
    if as_json:
        return emit_json(builds)
    table([(b["id"][:8], b["status"], b["commit"][:7], ago(b["created_at"]),
            f"{b['duration']:.0f}s" if b["duration"] else "") for b in builds],
          ["ID", "STATUS", "COMMIT", "CREATED", "DURATION"])


@cli.command("releases")
@app_option
@json_option
def releases_list(app: str, as_json: bool) -> None:
    """List an app's releases, newest first."""
    releases = connection.client().get(f"/v1/apps/{app}/releases")
    if as_json:
        return emit_json(releases)
    heading(f"{app} Releases")
    table([(f"v{r['version']}", r["description"], r["status"] + (" (current)" if r["current"]
            else ""), r["created_by"] or "-", ago(r["created_at"])) for r in releases],
          ["VERSION", "DESCRIPTION", "STATUS", "BY", "WHEN"])


def main() -> None:
    from paas.cli import (  # noqa: F401 - registers commands
        access,
        addons,
        auth,
        autocerts,
        certs,
        config_vars,
        cron,
        db,
        doctor,
        domains,
        git,
        keys,
        maintenance,
        nodes,
        platform,
        ps,
        releases,
        slugs,
        users,
    )

    cli(prog_name="paas")
