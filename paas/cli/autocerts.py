"""certs:auto, certs:auto:enable, certs:auto:disable, https:redirect: automatic HTTPS."""

from __future__ import annotations

import time
from typing import Any

import click

from paas.cli import connection
from paas.cli.certs import _expiry
from paas.cli.main import app_option, cli, json_option
from paas.cli.output import emit_json, heading, table


def _when(timestamp: float | None) -> str:
    if not timestamp:
        return ""
    seconds = max(int(timestamp - time.time()), 0)
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(timestamp)) + f" (in {seconds} s)"


def _detail(entry: dict[str, Any]) -> str:
    state, message = entry["state"], entry["message"]
    if state == "failing":
        return f"{message}; next try {_when(entry['next_try_at'])}, failures {entry['failures']}"
    return message


def _state(entry: dict[str, Any]) -> str:
    if entry["state"] in ("issued", "uploaded") and entry["expires_at"]:
        return f"{entry['state']} (expires {_expiry(entry['expires_at'])})"
    return str(entry["state"])


def _show(app: str, status: dict[str, Any], as_json: bool) -> None:
    if as_json:
        return emit_json(status)
    heading(f"{app} Automatic Certificates")
    if not status["acme"]:
        click.echo("Automatic certificates are off on this platform (PAAS_ACME_DIRECTORY).")
    elif not status["enabled"]:
        click.echo(f"Off for {app}: `paas certs:auto:enable -a {app}` turns them on.")
    table([(e["hostname"], _state(e), _detail(e)) for e in status["domains"]],
          ["DOMAIN", "STATUS", "DETAIL"])


@cli.command("certs:auto")
@app_option
@json_option
def certs_auto(app: str, as_json: bool) -> None:
    """Each of the app's domains: its automatic certificate pending, issued or failing."""
    _show(app, connection.client().get(f"/v1/apps/{app}/acm"), as_json)


@cli.command("certs:auto:enable")
@app_option
@json_option
def certs_auto_enable(app: str, as_json: bool) -> None:
    """Order certificates from the platform's ACME CA for the app's domains."""
    status = connection.client().post(f"/v1/apps/{app}/acm")
    if not as_json:
        click.echo(f"Enabling automatic certificates for {app}... done")
    _show(app, status, as_json)


@cli.command("certs:auto:disable")
@app_option
def certs_auto_disable(app: str) -> None:
    """Stop ordering and serving the app's automatic certificates (uploaded ones stay)."""
    connection.client().delete(f"/v1/apps/{app}/acm")
    click.echo(f"Disabling automatic certificates for {app}... done")


@cli.command("https:redirect")
@click.argument("setting", type=click.Choice(["on", "off"]), required=False)
@click.option("--hsts", "hsts", type=click.IntRange(0, 2 * 365 * 86400), default=0,
              help="also send Strict-Transport-Security with this max-age (seconds)")
@app_option
@json_option
def https_redirect(setting: str | None, hsts: int, app: str, as_json: bool) -> None:
    """Redirect HTTP to HTTPS (308) for the hostnames with a certificate; show it without
    ON/OFF. ACME challenges are never redirected."""
    client = connection.client()
    if setting is None:
        state = client.get(f"/v1/apps/{app}/https-redirect")
    else:
        state = client.put(f"/v1/apps/{app}/https-redirect",
                           {"https_redirect": setting == "on", "hsts_max_age": hsts})
    if as_json:
        return emit_json(state)
    hsts_text = f", HSTS max-age={state['hsts_max_age']}" if state["hsts_max_age"] else ""
    click.echo(f"HTTPS redirect for {app}: {'on' if state['https_redirect'] else 'off'}"
               f"{hsts_text}")
