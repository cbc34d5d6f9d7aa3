"""`paas doctor`: is this host fit to run the platform? Each problem with what to run."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import click

from paas.cli import connection
from paas.cli.main import cli, json_option
from paas.cli.output import emit_json, heading


@cli.command("doctor")
@click.option("--remote", is_flag=True, help="Ask the running platform's API host (admin).")
@json_option
def doctor(remote: bool, as_json: bool) -> None:
    """Check this host: kernel, tools, disk, network, services, leftovers (non-zero exit:
    the platform cannot run here)."""
    if remote:
        findings = connection.client().get("/v1/doctor")
    else:
        from paas import doctor as checks

        findings = [finding.to_json() for finding in checks.run()]
    if as_json:
        emit_json(findings)
    else:
        show(findings)
    if any(finding["fatal"] for finding in findings):
        sys.exit(1)


def show(findings: Sequence[dict[str, Any]]) -> None:
    area = None
    for finding in findings:
        if finding["area"] != area:
            area = finding["area"]
            heading(area)
        mark = "ok" if finding["ok"] else "FAIL" if finding["fatal"] else "warn"
        colour = {"ok": "green", "FAIL": "red", "warn": "yellow"}[mark]
        click.echo(f"{click.style(mark.ljust(4), fg=colour)}  {finding['check']}: "
                   f"{finding['detail']}")
        if finding["fix"]:
            click.echo(f"      fix: {finding['fix']}")
    failed = sum(1 for f in findings if f["fatal"])
    warned = sum(1 for f in findings if not f["ok"] and not f["fatal"])
    if failed:
        click.secho(f"{failed} problem(s) stop the platform from running here", fg="red")
    else:
        click.echo(f"The platform can run here ({warned} warning(s))")
