"""The database schema: the Alembic migrations in paas/migrations, applied when the database is
opened (the API at start, tests), so a PAAS_HOME made by an older paas is brought up to date.

A database made by `Base.metadata.create_all` before migrations existed (its tables, but no
alembic_version) is stamped at the baseline revision, which creates exactly that schema, and
then upgraded like any other. Starters that race (two API processes, a restart during a start)
take turns: on SQLite on a file lock beside the file, the migration itself in one
`BEGIN IMMEDIATE` transaction; on PostgreSQL the migration is one transaction (its DDL
included) whose first statement takes the migration advisory lock, so a second starter waits,
then finds the schema at head. Either way a failed migration leaves the database as it was."""

from __future__ import annotations

import fcntl
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import create_engine, event, inspect, pool
from sqlalchemy.engine import Connection, Engine, make_url

from paas import database

if TYPE_CHECKING:  # Alembic is loaded where it runs: `upgrade_in_child` runs it elsewhere
    from alembic.config import Config

BASELINE = "0001"
# The tables the baseline creates: one of them present without alembic_version means a
# database from the create_all days.
BASELINE_TABLES = {"users", "tokens", "ssh_keys", "apps", "builds", "releases", "config_vars",
                   "collaborators", "formation", "dynos", "oneoffs", "domains", "certificates"}


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration, built in code: no alembic.ini is read at run time."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", "paas:migrations")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head() -> str:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head() or ""


def current(url: str) -> str | None:
    """The revision the database is at; None: not under migrations (empty or create_all)."""
    from alembic.runtime.migration import MigrationContext

    engine = migration_engine(url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def upgrade(url: str) -> None:
    """Brings the database at `url` to the newest revision; a no-op when it is there."""
    from alembic import command

    with _lock(url):
        engine = migration_engine(url)
        try:
            with engine.begin() as connection:
                if connection.dialect.name == "postgresql":
                    connection.exec_driver_sql(
                        f"SELECT pg_advisory_xact_lock({database.MIGRATION_LOCK})")
                config = alembic_config(connection)
                if _unversioned_with_tables(connection):
                    command.stamp(config, BASELINE)
                command.upgrade(config, "head")
        finally:
            engine.dispose()


def _unversioned_with_tables(connection: Connection) -> bool:
    tables = set(inspect(connection).get_table_names())
    return "alembic_version" not in tables and bool(tables & BASELINE_TABLES)


def migration_engine(url: str) -> Engine:
    """An engine for migrating: no pooled connections kept, and on SQLite foreign keys off
    and one transaction per `begin()` (see _sqlite_transactions)."""
    engine = create_engine(database.engine_url(url), poolclass=pool.NullPool)
    if engine.dialect.name == "sqlite":
        _sqlite_transactions(engine)
    return engine


def _sqlite_transactions(engine: Engine) -> None:
    """Lets SQLAlchemy, not the sqlite3 module, decide where transactions begin, so the whole
    migration (DDL included) is one transaction that holds the write lock from its start."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout=30000")
        # Switched here, under the lock: switching needs the database to itself, and a
        # starter that opens it later (make_engine asks for WAL too) finds it done.
        cursor.execute("PRAGMA journal_mode=WAL")
        # A table that a batch migration copies is dropped: with foreign keys on, that drop
        # would cascade to every row that references it.
        cursor.execute("PRAGMA foreign_keys=OFF")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


@contextmanager
def _lock(url: str) -> Iterator[None]:
    """Held while migrating a SQLite file (PostgreSQL: an advisory lock, in `upgrade`)."""
    path = make_url(url).database
    if make_url(url).get_backend_name() != "sqlite" or path in (None, "", ":memory:"):
        yield
        return
    with Path(f"{path}.migrate-lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def upgrade_in_child(url: str) -> None:
    """`upgrade` in a child interpreter that exits after it: Alembic and the migrations (~13
    MiB) are not kept by the long-running process that opens the database (the API). The
    URL goes on stdin, never on a command line others can read (it may hold a password)."""
    done = subprocess.run([sys.executable, "-m", "paas.schema"], input=url, text=True,
                          capture_output=True, check=False)
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        raise RuntimeError("migrating the database failed: "
                           + (lines[-1] if lines else f"exit {done.returncode}"))


def main() -> None:
    """`python -m paas.schema` with the database URL on stdin: upgrades it."""
    upgrade(sys.stdin.read().strip())


if __name__ == "__main__":
    main()
