"""domains, domains:add, domains:remove."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import click

from paas.cli import connection
from paas.cli.main import app_option, cli, json_option
from paas.cli.output import emit_json, heading, table


@cli.command("domains")
@app_option
@json_option
def domains_list(app: str, as_json: bool) -> None:
    """List an app's hostnames: its own and its custom domains."""
    domains = connection.client().get(f"/v1/apps/{app}/domains")
    if as_json:
        return emit_json(domains)
    heading(f"{app} Domain Names")
    table([(d["hostname"], d["kind"]) for d in domains], ["DOMAIN NAME", "KIND"])


@cli.command("domains:add")
@click.argument("hostname")
@app_option
@json_option
def domains_add(hostname: str, app: str, as_json: bool) -> None:
    """Route HOSTNAME (www.example.com, or a wildcard *.example.com) to the app."""
    domain = connection.client().post(f"/v1/apps/{app}/domains", {"hostname": hostname})
    if as_json:
        return emit_json(domain)
    click.echo(f"Adding {domain['hostname']} to {app}... done")
    click.echo(f"Point its DNS at this host (a CNAME to {app}'s hostname, or an A record).")


@cli.command("domains:remove")
@click.argument("hostname")
@app_option
def domains_remove(hostname: str, app: str) -> None:
    """Stop routing HOSTNAME to the app."""
    connection.client().delete(f"/v1/apps/{app}/domains/{quote(hostname, safe='')}")
    click.echo(f"Removing {hostname} from {app}... done")


def router_lines(info: dict[str, Any]) -> list[tuple[str, str]]:
    """apps:info's lines about routing: domains, maintenance, the last hour's figures."""
    lines = []
    if info.get("domains"):
        lines.append(("Domains", ", ".join(info["domains"])))
    if info.get("maintenance"):
        lines.append(("Maintenance", "on (requests get 503, H80)"))
    figures = info.get("router") or {}
    if "requests" in figures:
        status = " ".join(f"{k}: {v}" for k, v in figures["status"].items() if v)
        lines.append(("Requests", f"{figures['requests']} in the last {figures['minutes']} min"
                      + (f" ({status})" if status else "")))
        if figures.get("p50_ms") is not None:
            lines.append(("Service", f"p50 {figures['p50_ms']} ms, p95 {figures['p95_ms']} ms"))
    return lines
