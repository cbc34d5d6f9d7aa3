"""Schema migrations (paas/schema.py, paas/migrations): a new database gets exactly the models'
schema, one made by the old `create_all` is adopted with its rows, starting again changes
nothing, concurrent starters do not race, and a table-copying migration keeps the rows that
reference the copied table. The first test is what fails when a model changes without a
migration: write one (docs/ARCHITECTURE.md, "Database migrations")."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, select
from sqlalchemy.engine import Engine

from paas import schema
from paas.models import App, Base, ConfigVar, Release, User, make_sessionmaker

MIGRATIONS = Path(schema.__file__).parent / "migrations"


def url(path: Path) -> str:
    return f"sqlite:///{path}"


def engine_of(database: Path | str) -> Engine:
    """A SQLite file, or any database URL (tests/integration/test_postgres_schema.py)."""
    return create_engine(url(database) if isinstance(database, Path) else database)


def diffs_from_models(database: Path | str) -> list[Any]:
    engine = engine_of(database)
    try:
        with engine.connect() as connection:
            return compare_metadata(MigrationContext.configure(connection), Base.metadata)
    finally:
        engine.dispose()


def reflected(database: Path | str) -> dict[str, Any]:
    """Every table's columns, keys, unique constraints and indexes, in a comparable form
    (names aside: Alembic and create_all name the apps → releases keys differently)."""
    engine = engine_of(database)
    try:
        found = inspect(engine)
        return {table: {
            "columns": [(c["name"], str(c["type"]), c["nullable"], c["default"])
                        for c in found.get_columns(table)],
            "primary": found.get_pk_constraint(table)["constrained_columns"],
            "foreign": sorted((f["constrained_columns"], f["referred_table"],
                               f["referred_columns"], f["options"])
                              for f in found.get_foreign_keys(table)),
            "unique": sorted(u["column_names"] for u in found.get_unique_constraints(table)),
            "indexes": sorted((i["column_names"], i["unique"]) for i in found.get_indexes(table)),
        } for table in found.get_table_names() if table != "alembic_version"}
    finally:
        engine.dispose()


def made_the_old_way(database: Path) -> None:
    engine = create_engine(url(database))
    Base.metadata.create_all(engine)
    engine.dispose()


def made_before_migrations(database: Path) -> None:
    """A database from the create_all days: the baseline's tables, no alembic_version."""
    engine = schema.migration_engine(url(database))
    try:
        with engine.begin() as connection:
            command.upgrade(schema.alembic_config(connection), schema.BASELINE)
            connection.exec_driver_sql("DROP TABLE alembic_version")
    finally:
        engine.dispose()


def versions(database: Path) -> list[str]:
    with sqlite3.connect(database) as db:
        return [row[0] for row in db.execute("SELECT version_num FROM alembic_version")]


def test_a_new_database_gets_exactly_the_models_schema(tmp_path: Path) -> None:
    schema.upgrade(url(tmp_path / "new.db"))
    made_the_old_way(tmp_path / "old.db")
    assert diffs_from_models(tmp_path / "new.db") == []
    assert reflected(tmp_path / "new.db") == reflected(tmp_path / "old.db")
    assert schema.current(url(tmp_path / "new.db")) == schema.head()


def test_a_database_made_by_create_all_is_stamped_and_keeps_its_rows(tmp_path: Path) -> None:
    database = tmp_path / "paas.db"
    made_before_migrations(database)
    with sqlite3.connect(database) as db:
        db.execute("INSERT INTO users (email, is_admin, is_service, created_at) "
                   "VALUES ('ann@example.com', 1, 0, 1.0)")
        db.execute("INSERT INTO apps (name, slot, owner_id, created_at, maintenance) "
                   "VALUES ('kept', 7, 1, 1.0, 0)")
    assert schema.current(url(database)) is None

    with make_sessionmaker(url(database))() as session:
        app = session.scalars(select(App)).one()
        assert (app.name, app.slot, app.owner_id) == ("kept", 7, 1)
        assert session.get(User, 1).email == "ann@example.com"
    assert versions(database) == [schema.head()]
    assert diffs_from_models(database) == []


def test_upgrading_again_changes_nothing(tmp_path: Path) -> None:
    database = tmp_path / "paas.db"
    with make_sessionmaker(url(database))() as session:
        session.add(User(email="bob@example.com"))
        session.commit()
    with sqlite3.connect(database) as db:
        before = db.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()

    schema.upgrade(url(database))
    with make_sessionmaker(url(database))() as session:
        assert [u.email for u in session.scalars(select(User))] == ["bob@example.com"]

    with sqlite3.connect(database) as db:
        after = db.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()
    assert after == before
    assert versions(database) == [schema.head()]


def test_starters_at_the_same_time_each_find_the_schema_ready(tmp_path: Path) -> None:
    database = tmp_path / "paas.db"
    start = threading.Barrier(4)
    errors: list[BaseException] = []

    def start_up() -> None:
        start.wait()
        try:
            with make_sessionmaker(url(database))() as session:
                session.scalars(select(App)).all()
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=start_up) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert versions(database) == [schema.head()]
    assert diffs_from_models(database) == []


NEXT_REVISION = '''
import sqlalchemy as sa
from alembic import op

revision = "test_next"
down_revision = "{head}"


def upgrade() -> None:
    with op.batch_alter_table("apps") as batch:
        batch.add_column(sa.Column("region", sa.String(16), nullable=False, server_default="eu"))
        batch.alter_column("name", type_=sa.String(40))  # SQLite: copy the table
'''


def with_next_revision(tmp_path: Path, source: str) -> Path:
    """A copy of the migrations with one more revision."""
    scripts = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS, scripts, ignore=shutil.ignore_patterns("__pycache__"))
    (scripts / "versions" / "test_next.py").write_text(source.format(head=schema.head()))
    return scripts


def upgrade_with(scripts: Path, database: Path) -> None:
    config = schema.alembic_config()
    config.set_main_option("script_location", str(scripts))
    engine = schema.migration_engine(url(database))
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    finally:
        engine.dispose()


def test_a_migration_that_copies_a_table_keeps_the_rows_referencing_it(tmp_path: Path) -> None:
    database = tmp_path / "paas.db"
    with make_sessionmaker(url(database))() as session:
        app = App(name="kept", slot=3)
        session.add(app)
        session.flush()
        session.add_all([ConfigVar(app_id=app.id, key="A", value="1"),
                         Release(app_id=app.id, version=1)])
        session.commit()

    # SQLite copies the table, drops the old one and renames the copy: with foreign keys on,
    # that drop would cascade to the config vars and releases of every app.
    upgrade_with(with_next_revision(tmp_path, NEXT_REVISION), database)

    with sqlite3.connect(database) as db:
        assert db.execute("SELECT name, region FROM apps").fetchall() == [("kept", "eu")]
        assert db.execute("SELECT key, value FROM config_vars").fetchall() == [("A", "1")]
        assert db.execute("SELECT version FROM releases").fetchall() == [(1,)]
        assert db.execute("PRAGMA foreign_key_check").fetchall() == []
    assert versions(database) == ["test_next"]


def test_a_migration_that_fails_leaves_the_database_as_it_was(tmp_path: Path) -> None:
    database = tmp_path / "paas.db"
    schema.upgrade(url(database))
    failing = NEXT_REVISION + '    raise RuntimeError("half way")\n'

    with pytest.raises(RuntimeError, match="half way"):
        upgrade_with(with_next_revision(tmp_path, failing), database)

    assert versions(database) == [schema.head()]
    assert diffs_from_models(database) == []


def test_the_api_migrates_in_a_child_and_keeps_no_alembic(tmp_path: Path) -> None:
    database = tmp_path / "child.sqlite"
    script = ("import sys; from paas.models import make_sessionmaker; "
              f"make_sessionmaker({url(database)!r}, migrate_in_child=True); "
              "print('alembic' in sys.modules)")
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=root, env={**os.environ, "PYTHONPATH": str(root)}, check=True)
    assert done.stdout.strip() == "False"
    assert schema.current(url(database)) == schema.head()


def test_a_migration_that_fails_in_the_child_says_why(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="migrating the database failed: "):
        schema.upgrade_in_child(f"sqlite:///{tmp_path}/missing-dir/db.sqlite")
