"""cron, cron:run (an app's app.json cron jobs); admin:jobs, admin:jobs:run (the platform's own
periodic jobs, admin)."""

from __future__ import annotations

import time
from typing import Any

import click

from paas.cli import connection
from paas.cli.main import app_option, cli, json_option
from paas.cli.output import ago, emit_json, heading, table


def when(timestamp: float | None) -> str:
    """A coming time as `2026-12-03 09:41:00 UTC (in 40s)`."""
    if timestamp is None:
        return "-"
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(timestamp))
    seconds = int(timestamp - time.time())
    if seconds <= 0:
        return f"{stamp} (now)"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{stamp} (in {seconds // size}{unit})"
    return f"{stamp} (in {seconds}s)"


def outcome(run: dict[str, Any] | None) -> tuple[str, str]:
    """A last run's exit (or state) and duration."""
    if run is None:
        return "-", "-"
    if run["state"] == "running":
        return f"running ({run['dyno']})", "-"
    if run["state"] == "skipped":
        return "skipped", "-"
    code = "?" if run["exit_code"] is None else str(run["exit_code"])
    return f"exit {code} ({run['dyno']}, {ago(run['started_at'])})", f"{run['duration']:.1f}s"


@cli.command("cron")
@app_option
@json_option
def cron_list(app: str, as_json: bool) -> None:
    """List the app's cron jobs (app.json's "cron"): id, schedule, command, next and last run."""
    jobs = connection.client().get(f"/v1/apps/{app}/cron")
    if as_json:
        return emit_json(jobs)
    if not jobs:
        click.echo(f'{app} has no cron jobs: add them to app.json, e.g. "cron": '
                   '[{"command": "python task.py", "schedule": "@daily"}]')
        return
    heading(f"{app} Cron jobs")
    rows = []
    for job in jobs:
        last, took = outcome(job["last_run"])
        schedule = job["schedule"] + ("" if job["tz"] == "UTC" else f" ({job['tz']})")
        rows.append((job["id"], schedule, job["command"], when(job["next_run"]), last, took))
    table(rows, ["ID", "SCHEDULE", "COMMAND", "NEXT RUN", "LAST RUN", "DURATION"])


@cli.command("cron:run")
@click.argument("job")
@app_option
@json_option
def cron_run(job: str, app: str, as_json: bool) -> None:
    """Run one of the app's cron jobs now, in a one-off dyno (its output in `paas logs`)."""
    run = connection.client().post(f"/v1/apps/{app}/cron/{job}/runs", {})
    if as_json:
        return emit_json(run)
    click.echo(f"Running job {job} on {app}... up, {run['dyno']}: `paas logs -a {app} "
               f"--ps {run['dyno']}` shows its output")


@cli.command("admin:jobs")
@json_option
def admin_jobs(as_json: bool) -> None:
    """List the platform's own periodic jobs: every, last run, next run (admin)."""
    jobs = connection.client().get("/v1/admin/jobs")
    if as_json:
        return emit_json(jobs)
    rows = []
    for job in jobs:
        run = job["last_run"]
        last = "-" if run is None else (
            f"{run['state']} {ago(run['started_at'])}"
            + (f" in {run['duration']:.1f}s" if run["duration"] is not None else ""))
        rows.append((job["name"], f"{job['every_seconds']:g}s", last,
                     (run or {}).get("summary") or "-",
                     "running" if job["next_run"] is None else when(job["next_run"])))
    table(rows, ["JOB", "EVERY", "LAST RUN", "SUMMARY", "NEXT RUN"])


@cli.command("admin:jobs:run")
@click.argument("name")
def admin_jobs_run(name: str) -> None:
    """Run one of the platform's jobs now (admin): `paas admin:jobs` shows how it went."""
    connection.client().post(f"/v1/admin/jobs/{name}/runs", {})
    click.echo(f"Asked for a run of {name}: `paas admin:jobs` shows how it went")
