"""nodes (the platform's admin): the hosts that run dynos."""

from __future__ import annotations

import click

from paas.cli import connection
from paas.cli.main import cli, json_option
from paas.cli.output import emit_json, table


def heartbeat_age(seconds: float) -> str:
    return f"{seconds:.0f}s ago" if seconds < 120 else f"{seconds // 60:.0f}m ago"


@cli.command("nodes")
@json_option
def nodes_list(as_json: bool) -> None:
    """List the nodes that run dynos: ready or lost, memory assigned, dynos (admin)."""
    nodes = connection.client().get("/v1/nodes")
    if as_json:
        return emit_json(nodes)
    if not nodes:
        click.echo("No nodes yet: a node registers when its agent starts (paas up)")
        return
    table([(n["name"], n["state"], n["backend"], f"{n['memory_used_mb']}/{n['memory_mb']} MB",
            n["dynos"], heartbeat_age(n["heartbeat_age"])) for n in nodes],
          ["NODE", "STATE", "BACKEND", "MEMORY", "DYNOS", "HEARTBEAT"])
