"""`paas db:migrate-from-sqlite`: move this host's installation from its SQLite file into
PostgreSQL (paas/dbmove.py). Run on the API's host, with the platform down: it reads the
database directly, as `paas up` does."""

from __future__ import annotations

from pathlib import Path

import click

from paas.cli.main import cli
from paas.cli.platform import _running_pid, _settings


@cli.command("db:migrate-from-sqlite")
@click.option("--from", "source", type=click.Path(dir_okay=False, path_type=Path),
              help="The SQLite file (default: $PAAS_HOME/paas.db).")
@click.option("--to", "target", envvar="PAAS_DATABASE_URL", metavar="URL",
              help="The PostgreSQL database, empty (default: $PAAS_DATABASE_URL).")
def migrate_from_sqlite(source: Path | None, target: str | None) -> None:
    """Copy every row of the SQLite database into an empty PostgreSQL one, then compare them
    (the SQLite file is left as it is; `paas up` with PAAS_DATABASE_URL uses the copy)."""
    from paas import database, dbmove

    settings = _settings()
    if pid := _running_pid(settings):
        raise click.ClickException(f"paas is up (pid {pid}) and writing the database: "
                                   "`paas down` first")
    source = source or settings.home / "paas.db"
    if not source.is_file():
        raise click.ClickException(f"{source}: no such SQLite file (--from names another)")
    if not target:
        raise click.ClickException(f"name the PostgreSQL database: --to {database.EXAMPLE} "
                                   "(or PAAS_DATABASE_URL)")
    try:
        database.check(target)
    except database.DatabaseUrlError as error:
        raise click.ClickException(f"--to {database.shown(target)}: {error}") from None
    moved = dbmove.move(f"sqlite:///{source.resolve()}", target, progress=click.echo)
    rows = sum(m.rows for m in moved)
    click.echo(f"-----> Moved {rows} rows in {len(moved)} tables to {database.shown(target)}; "
               "every row compared")
    click.echo(f"       Start the platform on it: PAAS_DATABASE_URL={database.shown(target)} "
               f"paas up ({source} is kept as it was)")
