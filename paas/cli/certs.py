"""certs, certs:add, certs:remove: TLS for an app's domains."""

from __future__ import annotations

import time
from pathlib import Path

import click

from paas.cli import connection
from paas.cli.main import app_option, cli, json_option
from paas.cli.output import emit_json, heading, table
from paas.errors import Invalid


def _read(path: str, what: str) -> str:
    try:
        return Path(path).read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise Invalid(f"cannot read the {what} file {path}: {error}") from None


def _expiry(timestamp: float) -> str:
    days = int((timestamp - time.time()) // 86400)
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(timestamp))
    return f"{when} ({days} days)" if days >= 0 else f"{when} (expired)"


@cli.command("certs")
@app_option
@json_option
def certs_list(app: str, as_json: bool) -> None:
    """List an app's TLS certificates and when they expire."""
    certs = connection.client().get(f"/v1/apps/{app}/certs")
    if as_json:
        return emit_json(certs)
    heading(f"{app} Certificates")
    table([(c["name"], ", ".join(c["hostnames"]), _expiry(c["expires_at"])) for c in certs],
          ["NAME", "COMMON NAME(S)", "EXPIRES"])


@cli.command("certs:add")
@click.argument("cert_file", metavar="CERT")
@click.argument("key_file", metavar="KEY")
@app_option
@json_option
def certs_add(cert_file: str, key_file: str, app: str, as_json: bool) -> None:
    """Serve HTTPS for the app's domains with CERT (PEM, chain after it) and KEY (PEM)."""
    cert = connection.client().post(f"/v1/apps/{app}/certs", {
        "certificate": _read(cert_file, "certificate"), "key": _read(key_file, "key")})
    if as_json:
        return emit_json(cert)
    click.echo(f"Adding certificate {cert['name']} to {app}... done")
    click.echo(f"Serves {', '.join(cert['hostnames'])}; expires {_expiry(cert['expires_at'])}")


@cli.command("certs:remove")
@click.argument("name")
@app_option
def certs_remove(name: str, app: str) -> None:
    """Remove the certificate NAME (`paas certs` lists them)."""
    connection.client().delete(f"/v1/apps/{app}/certs/{name}")
    click.echo(f"Removing certificate {name} from {app}... done")
