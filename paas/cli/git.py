"""git:remote and the git credential helper that hands git the API token."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import click

from paas.cli import connection
from paas.cli.main import app_option, cli
from paas.errors import Invalid


@cli.command("git:remote")
@app_option
@click.option("-r", "--remote", default="paas", show_default=True, help="the remote's name")
def git_remote(app: str, remote: str) -> None:
    """Add a git remote for an app to the repository in this directory."""
    api = connection.client()
    api.get(f"/v1/apps/{app}")
    url = f"{api.base_url}/git/{app}.git"
    if _git("rev-parse", "--git-dir").returncode != 0:
        raise Invalid("this directory is not a git repository: run `git init` first")
    if _git("remote", "get-url", remote).returncode == 0:
        _git("remote", "set-url", remote, url)
    else:
        _git("remote", "add", remote, url)
    _git("config", f"credential.{api.base_url}.helper", "")
    paas = shlex.quote(str(Path(sys.argv[0]).resolve()))
    _git("config", "--add", f"credential.{api.base_url}.helper", f"!{paas} git:credential")
    click.echo(f"set git remote {remote} to {url}")


@cli.command("git:credential", hidden=True)
@click.argument("operation")
def git_credential(operation: str) -> None:
    """git credential helper: answers `get` with the API token."""
    sys.stdin.read()
    if operation == "get":
        click.echo(f"username=paas\npassword={connection.token()}")


def _git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], capture_output=True, text=True, check=False)
