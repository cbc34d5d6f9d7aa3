"""users and users:create (the platform's admin)."""

from __future__ import annotations

import secrets
import sys

import click

from paas.cli import connection
from paas.cli.auth import read_secret
from paas.cli.main import cli, json_option
from paas.cli.output import ago, emit_json, table


@cli.command("users")
@json_option
def users_list(as_json: bool) -> None:
    """List the platform's users (admin)."""
    users = connection.client().get("/v1/users")
    if as_json:
        return emit_json(users)
    table([(u["email"], u["role"], ago(u["created_at"])) for u in users],
          ["EMAIL", "ROLE", "CREATED"])


@cli.command("users:create")
@click.argument("email")
@click.option("--password-stdin", is_flag=True, help="read the password from standard input")
@json_option
def users_create(email: str, password_stdin: bool, as_json: bool) -> None:
    """Create a user (admin). Asks for a password on a terminal; otherwise, without
    --password-stdin, makes one up and prints it once."""
    generated = not password_stdin and not sys.stdin.isatty()
    password = (secrets.token_urlsafe(12) if generated
                else read_secret("Password", password_stdin, confirm=True))
    user = connection.client().post("/v1/users", {"email": email, "password": password})
    if as_json:
        return emit_json({**user, **({"password": password} if generated else {})})
    click.echo(f"Created user {user['email']}; they log in with `paas login`")
    if generated:
        click.echo(f"Their password (shown only now): {password}")
