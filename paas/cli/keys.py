"""keys, keys:add and keys:remove: the SSH keys that git push over SSH accepts as you."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import click

from paas.cli import connection
from paas.cli.main import cli, json_option
from paas.cli.output import ago, emit_json, heading, table
from paas.errors import Invalid

DEFAULT_KEYS = ("id_ed25519.pub", "id_ecdsa.pub", "id_rsa.pub")


@cli.command("keys")
@json_option
def keys_list(as_json: bool) -> None:
    """List your SSH keys."""
    found = connection.client().get("/v1/keys")
    if as_json:
        return emit_json(found)
    heading("Your SSH keys")
    table([(k["fingerprint"], k["type"], k["comment"] or "-", ago(k["created_at"]))
           for k in found], ["FINGERPRINT", "TYPE", "COMMENT", "ADDED"])


@cli.command("keys:add")
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
def keys_add(file: Path | None) -> None:
    """Add an SSH public key (FILE, by default ~/.ssh/id_ed25519.pub) so that
    `git push ssh://git@HOST:2222/APP.git` works as you."""
    path = file or _default_key()
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise Invalid(f"cannot read {path}: {error}") from None
    key = connection.client().post("/v1/keys", {"public_key": text})
    click.echo(f"Uploading {path} SSH key... done ({key['fingerprint']})")


@cli.command("keys:remove")
@click.argument("key")
def keys_remove(key: str) -> None:
    """Remove one of your SSH keys, by its comment (e.g. you@host) or its fingerprint."""
    removed = connection.client().delete(f"/v1/keys/{quote(key, safe='')}")
    click.echo(f"Removing {removed['comment'] or removed['fingerprint']} SSH key... done")


def _default_key() -> Path:
    for name in DEFAULT_KEYS:
        path = Path.home() / ".ssh" / name
        if path.exists():
            return path
    raise Invalid("no public key in ~/.ssh: make one with `ssh-keygen -t ed25519`, "
                  "or name the file: paas keys:add FILE.pub")
