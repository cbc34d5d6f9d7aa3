"""The migrations on a real PostgreSQL 15 (tests/postgres.py): every revision up, then every
one down, one at a time; at head the schema is exactly the models' (what `create_all` makes
on PostgreSQL, and what autogenerate compares), including the baseline's branch for databases
other than SQLite (apps' foreign keys to releases added once both tables exist). Starters at
the same time wait for each other, and a failed migration leaves nothing behind.

Revisions added later are checked here too: the list comes from the scripts."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, inspect, select

from paas import schema
from paas.models import App, Base, make_engine, make_sessionmaker
from tests.unit.test_migrations import (
    NEXT_REVISION,
    diffs_from_models,
    reflected,
    with_next_revision,
)


def revisions() -> list[str]:
    """Every revision, oldest first."""
    scripts = ScriptDirectory.from_config(schema.alembic_config())
    return [r.revision for r in reversed(list(scripts.walk_revisions()))]


def migrate(url: str, target: str, *, down: bool = False) -> None:
    engine = schema.migration_engine(url)
    try:
        with engine.begin() as connection:
            config = schema.alembic_config(connection)
            (command.downgrade if down else command.upgrade)(config, target)
    finally:
        engine.dispose()


def tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def test_every_migration_runs_up_and_down_and_head_is_the_models(
        postgres_url: str, pg_cluster: Any) -> None:
    steps = revisions()
    assert steps[0] == schema.BASELINE
    for revision in steps:
        migrate(postgres_url, revision)
        assert schema.current(postgres_url) == revision
    assert schema.current(postgres_url) == schema.head()
    assert diffs_from_models(postgres_url) == []

    made_by_models = pg_cluster.create_database("models")
    engine = make_engine(made_by_models)
    # A copy: after create_all on PostgreSQL (ALTERs for the apps <-> releases cycle), a
    # SQLite create_all of the shared metadata in the same process left those keys out
    # (test_migrations failed after this file on one xdist worker).
    models = MetaData()
    for table in Base.metadata.sorted_tables:
        table.to_metadata(models)
    models.create_all(engine)
    engine.dispose()
    assert reflected(postgres_url) == reflected(made_by_models)

    for previous in [*reversed(steps[:-1]), "base"]:
        migrate(postgres_url, previous, down=True)
        assert schema.current(postgres_url) == (None if previous == "base" else previous)
    assert tables(postgres_url) == set()

    schema.upgrade(postgres_url)  # and up again, all at once, as the API does at start
    assert diffs_from_models(postgres_url) == []


def test_the_baseline_links_apps_and_releases_both_ways(postgres_url: str) -> None:
    migrate(postgres_url, schema.BASELINE)
    engine = make_engine(postgres_url)
    try:
        keys = inspect(engine).get_foreign_keys("apps")
    finally:
        engine.dispose()
    to_releases = sorted(k["constrained_columns"][0] for k in keys
                         if k["referred_table"] == "releases")
    assert to_releases == ["current_release_id", "pending_release_id"]


def test_a_database_without_alembic_version_is_stamped_and_upgraded(postgres_url: str) -> None:
    migrate(postgres_url, schema.BASELINE)
    engine = make_engine(postgres_url)
    with engine.begin() as connection:
        connection.exec_driver_sql("DROP TABLE alembic_version")
        connection.exec_driver_sql("INSERT INTO apps (name, slot, created_at, maintenance) "
                                   "VALUES ('kept', 4, 1.0, false)")
    engine.dispose()
    assert schema.current(postgres_url) is None

    sessions = make_sessionmaker(postgres_url)
    with sessions() as session:
        assert [a.name for a in session.scalars(select(App))] == ["kept"]
    sessions.kw["bind"].dispose()
    assert schema.current(postgres_url) == schema.head()
    assert diffs_from_models(postgres_url) == []


def test_starters_at_the_same_time_each_find_the_schema_ready(postgres_url: str) -> None:
    start = threading.Barrier(4)
    errors: list[BaseException] = []

    def start_up() -> None:
        start.wait()
        try:
            sessions = make_sessionmaker(postgres_url)
            with sessions() as session:
                session.scalars(select(App)).all()
            sessions.kw["bind"].dispose()
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=start_up) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert schema.current(postgres_url) == schema.head()


def test_a_migration_that_fails_leaves_the_database_as_it_was(
        postgres_url: str, tmp_path: Path) -> None:
    schema.upgrade(postgres_url)
    before = reflected(postgres_url)
    scripts = with_next_revision(tmp_path, NEXT_REVISION + '    raise RuntimeError("half way")\n')
    config = schema.alembic_config()
    config.set_main_option("script_location", str(scripts))
    engine = schema.migration_engine(postgres_url)
    with pytest.raises(RuntimeError, match="half way"), engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    engine.dispose()

    assert schema.current(postgres_url) == schema.head()
    assert reflected(postgres_url) == before  # the new column went with the rollback
