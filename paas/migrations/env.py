"""Alembic's entry point. At run time paas/schema.py hands over a connection, in a
transaction, as `config.attributes["connection"]`; from the command line (`alembic ...` at the
repo root, which reads alembic.ini there) the database is its `sqlalchemy.url`."""

from __future__ import annotations

from logging.config import fileConfig
from pathlib import Path

from alembic import context
from sqlalchemy.engine import Connection, make_url

from paas.models import Base
from paas.schema import migration_engine


def run(connection: Connection) -> None:
    # render_as_batch: SQLite cannot ALTER most things, so autogenerate writes
    # batch_alter_table blocks (copy the table, move the rows, swap) that work everywhere.
    context.configure(connection=connection, target_metadata=Base.metadata,
                      render_as_batch=True, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


def from_command_line() -> None:
    config = context.config
    if config.config_file_name:
        fileConfig(config.config_file_name)
    url = make_url(config.get_main_option("sqlalchemy.url") or "")
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = migration_engine(url.render_as_string(hide_password=False))
    try:
        with engine.begin() as connection:
            run(connection)
    finally:
        engine.dispose()


given = context.config.attributes.get("connection")
if given is not None:
    run(given)
else:
    from_command_line()
