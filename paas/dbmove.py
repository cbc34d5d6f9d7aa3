"""Moving an installation's state from its SQLite file into PostgreSQL
(`paas db:migrate-from-sqlite`), with nothing lost: every row of every table, byte for byte.

Both databases are first brought to the newest migration, so they have the same tables (the
models'). A SQLite table the models do not know is refused rather than left behind; so is a
target that already holds rows. The copy is one PostgreSQL transaction under the platform's
writer lock (paas/database.py): it lands whole or not at all. Tables go parents first
(`Base.metadata.sorted_tables`); a foreign key in a cycle (apps' current and pending
releases) is filled in once its rows exist. JSON columns are copied as their stored text
(PostgreSQL's `json` keeps text as it is), so SQL NULL and JSON `null` stay apart. The id
sequences then continue after the highest id, and every row is read back from both sides and
compared before the commit."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    Integer,
    Table,
    Text,
    bindparam,
    cast,
    func,
    insert,
    inspect,
    select,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.elements import ColumnElement

from paas import database, schema
from paas.errors import Invalid
from paas.models import Base, make_engine

BATCH = 500


@dataclass(frozen=True)
class Moved:
    table: str
    rows: int


def move(source_url: str, target_url: str,
         progress: Callable[[str], None] = lambda _line: None) -> list[Moved]:
    """Copies every row of the SQLite database at `source_url` into the empty PostgreSQL
    database at `target_url`; raises Invalid (nothing copied) when it cannot."""
    _refuse_unless(source_url, target_url)
    progress("-----> Bringing both databases to the newest migration")
    schema.upgrade(source_url)
    schema.upgrade(target_url)
    source, target = make_engine(source_url), make_engine(target_url)
    try:
        with source.connect() as reading, target.begin() as writing:
            _refuse_unknown_tables(reading)
            writing.exec_driver_sql(f"SELECT pg_advisory_xact_lock({database.WRITER_LOCK})")
            _refuse_rows_in(writing)
            moved = [_copy(reading, writing, table, progress)
                     for table in Base.metadata.sorted_tables]
            _fill_cycles(reading, writing)
            _continue_sequences(writing)
            progress("-----> Comparing every row")
            for table in Base.metadata.sorted_tables:
                _compare(reading, writing, table)
        return moved
    finally:
        source.dispose()
        target.dispose()


def _refuse_unless(source_url: str, target_url: str) -> None:
    if database.engine_url(source_url).get_backend_name() != "sqlite":
        raise Invalid(f"{database.shown(source_url)} is not a SQLite database")
    if not database.is_postgres(target_url):
        raise Invalid(f"{database.shown(target_url)} is not a PostgreSQL database: set "
                      f"PAAS_DATABASE_URL (or --to) like {database.EXAMPLE}")


def _refuse_unknown_tables(reading: Connection) -> None:
    unknown = set(inspect(reading).get_table_names()) - set(Base.metadata.tables) - {
        "alembic_version"}
    if unknown:
        raise Invalid(f"the SQLite database has tables this paas does not know "
                      f"({', '.join(sorted(unknown))}): move it with the paas that made them")


def _refuse_rows_in(writing: Connection) -> None:
    full = [t.name for t in Base.metadata.sorted_tables
            if writing.execute(select(func.count()).select_from(t)).scalar_one()]
    if full:
        raise Invalid(f"the PostgreSQL database already holds rows (in {', '.join(full)}): "
                      "move into an empty database")


def _cycle_columns(table: Table) -> list[str]:
    """Columns whose foreign key is in a cycle (use_alter): copied empty, filled in later."""
    return [key for fk in table.foreign_key_constraints if fk.use_alter
            for key in fk.column_keys]


def _readable(table: Table) -> list[ColumnElement[Any]]:
    """The table's columns as read for copying: JSON as its stored text."""
    return [cast(c, Text).label(c.name) if isinstance(c.type, JSON) else c
            for c in table.columns]


def _rows(reading: Connection, table: Table) -> Iterator[dict[str, Any]]:
    query = select(*_readable(table)).order_by(*table.primary_key.columns)
    for row in reading.execute(query).mappings():
        yield dict(row)


def _copy(reading: Connection, writing: Connection, table: Table,
          progress: Callable[[str], None]) -> Moved:
    deferred = _cycle_columns(table)
    values = {c.name: cast(bindparam(c.name, type_=Text), c.type) if isinstance(c.type, JSON)
              else bindparam(c.name, type_=c.type) for c in table.columns}
    statement = insert(table).values(values)
    count = 0
    batch: list[dict[str, Any]] = []
    for row in _rows(reading, table):
        batch.append({**row, **dict.fromkeys(deferred)})
        if len(batch) == BATCH:
            count += _insert(writing, statement, table, batch)
            batch = []
    if batch:
        count += _insert(writing, statement, table, batch)
    progress(f"       {table.name}: {count} rows")
    return Moved(table.name, count)


def _insert(writing: Connection, statement: Any, table: Table,
            batch: Sequence[dict[str, Any]]) -> int:
    try:
        writing.execute(statement, list(batch))
    except DBAPIError as error:
        first = str(error.orig).splitlines()[0] if error.orig else str(error)
        raise Invalid(f"PostgreSQL refused a row of {table.name} ({first}); nothing was "
                      "moved") from None
    return len(batch)


def _fill_cycles(reading: Connection, writing: Connection) -> None:
    for table in Base.metadata.sorted_tables:
        deferred = _cycle_columns(table)
        if not deferred:
            continue
        (key,) = table.primary_key.columns
        statement = update(table).where(key == bindparam("_key")).values(
            {name: bindparam(f"_{name}") for name in deferred})
        rows = [{"_key": row[key.name], **{f"_{name}": row[name] for name in deferred}}
                for row in reading.execute(select(key, *(table.c[n] for n in deferred)))
                .mappings() if any(row[name] is not None for name in deferred)]
        if rows:
            writing.execute(statement, rows)


def _continue_sequences(writing: Connection) -> None:
    """Ids were copied as they were: each table's sequence continues after the highest."""
    for table in Base.metadata.sorted_tables:
        keys = list(table.primary_key.columns)
        if len(keys) != 1 or not isinstance(keys[0].type, Integer):
            continue
        sequence = writing.execute(select(func.pg_get_serial_sequence(table.name,
                                                                      keys[0].name))).scalar()
        if sequence is None:
            continue
        highest = writing.execute(select(func.max(keys[0]))).scalar()
        writing.execute(select(func.setval(sequence, highest or 1, highest is not None)))


def _compare(reading: Connection, writing: Connection, table: Table) -> None:
    query = select(*_readable(table)).order_by(*table.primary_key.columns)
    there = writing.execute(query).mappings()
    for number, (mine, theirs) in enumerate(zip(reading.execute(query).mappings(), there,
                                                strict=False)):
        if dict(mine) != dict(theirs):
            raise Invalid(f"{table.name}: row {number + 1} reads back differently "
                          f"({_differing(table, dict(mine), dict(theirs))}); nothing was moved")
    counts = [c.execute(select(func.count()).select_from(table)).scalar_one()
              for c in (reading, writing)]
    if counts[0] != counts[1]:
        raise Invalid(f"{table.name}: {counts[0]} rows in SQLite, {counts[1]} copied; nothing "
                      "was moved")


def _differing(table: Table, mine: dict[str, Any], theirs: dict[str, Any]) -> str:
    columns: list[Column[Any]] = list(table.columns)
    return ", ".join(c.name for c in columns if mine.get(c.name) != theirs.get(c.name))
