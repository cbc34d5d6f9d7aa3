"""login, logout, auth:whoami and API tokens."""

from __future__ import annotations

import socket
import sys

import click

from paas.cli import connection
from paas.cli.main import add_alias, cli, json_option
from paas.cli.output import ago, emit_json, table
from paas.client import ApiClient
from paas.errors import Invalid, Unauthorized


def read_secret(prompt: str, from_stdin: bool, confirm: bool = False) -> str:
    """A password from stdin's first line (--password-stdin), or typed at a hidden prompt."""
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        raise Invalid("no terminal to type the password in: pipe it with --password-stdin")
    return click.prompt(prompt, hide_input=True, confirmation_prompt=confirm)


@cli.command("login")
@click.option("-e", "--email", help="your email (asked for when not given)")
@click.option("--password-stdin", is_flag=True, help="read the password from standard input")
@click.option("--token", help="log in with an existing API token instead of a password")
def login(email: str | None, password_stdin: bool, token: str | None) -> None:
    """Log in with your email and password (or a token); saves a new API token."""
    url = connection.api_url()
    if token:
        email = ApiClient(url, token).get("/v1/account")["email"]
    else:
        if not email:
            if not sys.stdin.isatty():
                raise Invalid("pass your email with --email (or run on a terminal)")
            email = click.prompt("Email")
        password = read_secret("Password", password_stdin)
        result = connection.anonymous_client().post("/v1/login", {
            "email": email, "password": password,
            "description": f"paas login on {socket.gethostname()}"})
        email, token = result["email"], result["token"]
    path = connection.save_credentials({"api_url": url, "email": email, "token": token})
    click.echo(f"Logged in as {email} (token saved in {path})")


@cli.command("logout")
def logout() -> None:
    """Revoke the saved token and forget it."""
    saved = connection.saved_credentials()
    if not saved.get("token"):
        click.echo("You are not logged in (no saved token)")
        return
    api = ApiClient(saved.get("api_url") or connection.api_url(), saved["token"])
    try:
        token_id = api.get("/v1/account")["token_id"]
        api.delete(f"/v1/tokens/{token_id}")
    except Unauthorized:
        pass  # revoked already: forgetting it is all that is left to do
    connection.forget_credentials()
    click.echo(f"Logged out {saved.get('email', '')}".rstrip())


@cli.command("auth:whoami")
@json_option
def whoami(as_json: bool) -> None:
    """Show who the current token belongs to."""
    account = connection.client().get("/v1/account")
    if as_json:
        return emit_json(account)
    click.echo(account["email"])


@cli.command("tokens")
@json_option
def tokens_list(as_json: bool) -> None:
    """List your API tokens (their values are never shown again)."""
    tokens = connection.client().get("/v1/tokens")
    if as_json:
        return emit_json(tokens)
    table([(t["id"], t["description"], ago(t["created_at"]), "*" if t["current"] else "")
           for t in tokens], ["ID", "DESCRIPTION", "CREATED", "CURRENT"])


@cli.command("tokens:create")
@click.option("-d", "--description", default="", help="what the token is for")
@json_option
def tokens_create(description: str, as_json: bool) -> None:
    """Create an API token (for CI, scripts, or `git push`); prints it once."""
    created = connection.client().post("/v1/tokens", {"description": description})
    if as_json:
        return emit_json(created)
    click.echo(f"Created token {created['id']}; it is shown only now:", err=True)
    click.echo(created["token"])


@cli.command("tokens:revoke")
@click.argument("token_id")
def tokens_revoke(token_id: str) -> None:
    """Revoke an API token by its ID (`paas tokens` lists them)."""
    revoked = connection.client().delete(f"/v1/tokens/{token_id}")
    click.echo(f"Revoked token {revoked['id']} ({revoked['description']})")


for alias, command in (("auth:login", login), ("auth:logout", logout), ("whoami", whoami)):
    add_alias(command, alias)


