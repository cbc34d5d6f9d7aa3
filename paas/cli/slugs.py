"""slugs:gc and builds:info: the layer store as users see it."""

from __future__ import annotations

import click

from paas.cli import connection
from paas.cli.main import app_option, cli, json_option
from paas.cli.output import emit_json, heading, table


def human(size: int | None) -> str:
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


@cli.command("slugs:gc")
@click.option("--min-age", type=float, default=None,
              help="seconds a blob must be old to go (default 0; running builds' blobs "
                   "always stay)")
@json_option
def slugs_gc(min_age: float | None, as_json: bool) -> None:
    """Remove layers no kept release uses (each app's last 5, current, pending, previous)."""
    body = {} if min_age is None else {"min_age": min_age}
    result = connection.client().post("/v1/slugs/gc", body)
    if as_json:
        return emit_json(result)
    click.echo(f"Removed {len(result['removed'])} blobs, freed {human(result['bytes_freed'])}; "
               f"{result['kept']} blobs are in use.")


@cli.command("builds:info")
@app_option
@click.argument("build", default="latest")
@json_option
def builds_info(app: str, build: str, as_json: bool) -> None:
    """Show a build's buildpacks and layers: sizes, and which were reused (default: latest)."""
    info = connection.client().get(f"/v1/apps/{app}/builds/{build}")
    if as_json:
        return emit_json(info)
    heading(f"{app} build {info['id'][:8]} ({info['status']}, commit {info['commit'][:7]})")
    click.echo(f"Buildpacks: {', '.join(info.get('buildpacks') or []) or '-'}")
    if info.get("error"):
        click.echo(f"Error: {info['error']}")
    layers = info.get("layers") or []
    table([(layer["name"], layer["digest"][7:19], human(layer.get("size")),
            "reused" if layer.get("reused") else "new") for layer in layers],
          ["LAYER", "DIGEST", "SIZE", "STATE"])
    new_bytes = sum(layer.get("size") or 0 for layer in layers if not layer.get("reused"))
    click.echo(f"New bytes: {human(new_bytes)}")
