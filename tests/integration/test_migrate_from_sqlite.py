"""`paas db:migrate-from-sqlite` (paas/dbmove.py) on a populated installation: users, tokens,
SSH keys, apps with owners and collaborators, builds, releases (current and pending: the
apps ↔ releases cycle), config vars, formation, nodes, assignments, dynos, one-offs, domains
and certificates — made by the domain functions where they exist, with awkward values
(unicode, newlines, quotes, JSON null beside SQL NULL, floats to the last digit) — moved into
a real PostgreSQL 15 by the CLI, then every row of every table compared here, independently.
A table no row of this test fills (a model added later) gets one made from its columns, so
every model is moved. The copy is then used: new rows get fresh ids. Refusals move nothing."""

from __future__ import annotations

import os
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import asyncssh
import pytest
from sqlalchemy import (
    JSON,
    Boolean,
    Float,
    Integer,
    String,
    Table,
    Text,
    cast,
    func,
    insert,
    select,
)

from paas import apps, auth, config_vars, domains, keys, releases, users
from paas import certs as certs_
from paas.models import (
    Assignment,
    Base,
    Build,
    Collaborator,
    Dyno,
    Formation,
    Node,
    OneOff,
    Release,
    make_engine,
    make_sessionmaker,
)
from tests.platform import PAAS
from tests.tls import make_cert

ED25519 = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()
AWKWARD = "é ünïcode ✓, \"quotes\" 'and' = signs\nsecond line\ttab"


def populate(url: str) -> None:
    sessions = make_sessionmaker(url)
    with sessions() as db:
        ann = users.create(db, "ann@example.com", "correct horse battery")
        bob = users.create(db, "bob@example.com", "battery staple horse")
        auth.create_token(db, ann, "laptop ✓")
        keys.add(db, ann, ED25519)
        app = apps.create(db, "shop", ann)
        other = apps.create(db, "blog", bob)
        db.add(Collaborator(app_id=app.id, user_id=bob.id))
        config_vars.apply(db, app, {"DATABASE_URL": "postgres://u:p@db/x", "MULTI": AWKWARD,
                                    "EMPTY": ""})
        build = Build(id="9d2c1c1e-0000-4000-8000-000000000001", app_id=app.id,
                      ref="refs/heads/main", old_commit="0" * 40, commit="a" * 40,
                      status="succeeded", slug={"layers": [], "process_types": {"web": "x"}},
                      started_at=1764720000.123456789, finished_at=None, created_by="ann")
        db.add_all([build, Build(id="9d2c1c1e-0000-4000-8000-000000000002", app_id=other.id,
                                 ref="refs/heads/main", old_commit="0" * 40, commit="b" * 40,
                                 status="failed", error=AWKWARD, slug=None)])
        db.flush()
        slug = {"layers": [{"digest": "sha256:" + "c" * 64, "name": "app"}],
                "process_types": {"web": "gunicorn app:app", "worker": "celery -A t"}}
        first = releases.create(db, app, slug=slug, description="Deploy aaaaaaa",
                                commit="a" * 40, created_by="ann", build=build)
        first.status = "succeeded"
        app.current_release_id = first.id
        releases.create(db, app, slug=slug, description="Set MULTI config vars",
                        commit="a" * 40, created_by="bob@example.com")
        db.add_all([
            Node(name="node-1", memory_mb=98304, dyno_subnet="10.213.0.0/16",
                 registered_at=1.5, heartbeat_at=1764720001.25),
            Assignment(app_id=app.id, type="web", index=1, node="node-1", memory_mb=512),
            Assignment(app_id=app.id, type="worker", index=1, node=None, reason=AWKWARD),
            Dyno(id="shop.web.1.v1", app_id=app.id, release_version=1, type="web", index=1,
                 state="up", ip="10.213.1.7", port=5000, exit_code=None, output_tail=AWKWARD,
                 memory_mb=41.25, cpu_percent=None, node="node-1"),
            OneOff(app_id=app.id, release_id=first.id, number=1, command="bash -c 'echo ✓'",
                   attach=True, tty=True, env={"A": "1", "B": None}, exit_code=-9),
        ])
        formation = db.scalar(select(Formation).where(Formation.app_id == app.id,
                                                      Formation.type == "web"))
        assert formation is not None
        formation.quantity, formation.restart_marks = 2, {"*": 1764720002.5}
        domains.add(db, app, "www.shop.example", "localhost")
        domains.add(db, app, "*.shop.example", "localhost")
        cert, key = make_cert("www.shop.example")
        certs_.add(db, app, cert, key, "localhost")
        db.commit()
    sessions.kw["bind"].dispose()
    fill_empty_tables(url)


def fill_empty_tables(url: str) -> None:
    """One row, made from its columns, in each table still empty (models added later)."""
    engine = make_engine(url)
    with engine.begin() as connection:
        for table in Base.metadata.sorted_tables:
            if connection.execute(select(func.count()).select_from(table)).scalar_one() == 0:
                connection.execute(insert(table).values(made_row(connection, table)))
    engine.dispose()


def made_row(connection: Any, table: Table) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for column in table.columns:
        if column.foreign_keys:
            target = next(iter(column.foreign_keys)).column
            row[column.name] = connection.execute(select(target).limit(1)).scalar()
        elif column.primary_key and isinstance(column.type, Integer):
            continue
        elif isinstance(column.type, Boolean):
            row[column.name] = True
        elif isinstance(column.type, Integer):
            row[column.name] = 7
        elif isinstance(column.type, Float):
            row[column.name] = 1764720003.75
        elif isinstance(column.type, JSON):
            row[column.name] = {"made": [AWKWARD]}
        elif isinstance(column.type, String | Text):
            length = getattr(column.type, "length", None) or 40
            row[column.name] = "made-é"[:length]
    return row


def every_row(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Each table's rows in primary key order, JSON as its stored text."""
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return {table.name: [tuple(r) for r in connection.execute(select(*[
                cast(c, Text) if isinstance(c.type, JSON) else c for c in table.columns
            ]).order_by(*table.primary_key.columns))] for table in Base.metadata.sorted_tables}
    finally:
        engine.dispose()


def migrate(home: Path, target: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PAAS_HOME": str(home), "PAAS_DATABASE_URL": target}
    return subprocess.run([PAAS, "db:migrate-from-sqlite", *args], env=env, text=True,
                          capture_output=True, timeout=120)


@pytest.fixture
def installation(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    populate(f"sqlite:///{home / 'paas.db'}")
    return home


def test_every_row_of_a_populated_installation_is_moved(installation: Path,
                                                        postgres_url: str) -> None:
    sqlite_url = f"sqlite:///{installation / 'paas.db'}"
    before = every_row(sqlite_url)
    assert all(before.values()), [name for name, rows in before.items() if not rows]

    result = migrate(installation, postgres_url)
    assert result.returncode == 0, result.stderr
    assert "every row compared" in result.stdout
    assert "releases: 2 rows" in result.stdout
    assert postgres_url.split("@")[0].split(":")[-1] not in result.stdout  # password hidden

    moved = every_row(postgres_url)
    assert moved == before
    assert every_row(sqlite_url) == before  # the SQLite file is left as it was
    with sqlite3.connect(installation / "paas.db") as db:  # SQL NULL and JSON null apart
        nulls = db.execute("SELECT slug IS NULL FROM builds ORDER BY id").fetchall()
    engine = make_engine(postgres_url)
    with engine.connect() as connection:
        assert connection.exec_driver_sql(
            "SELECT slug IS NULL FROM builds ORDER BY id").fetchall() == [
                (bool(n),) for (n,) in nulls]
    engine.dispose()


def test_the_moved_database_takes_new_rows_after_the_copied_ids(installation: Path,
                                                                 postgres_url: str) -> None:
    assert migrate(installation, postgres_url).returncode == 0
    sessions = make_sessionmaker(postgres_url)
    with sessions() as db:
        highest = db.scalar(select(func.max(Release.id)))
        owner = users.by_email(db, "ann@example.com")
        app = apps.create(db, "newer", owner)
        release = releases.create(db, app, slug={"layers": [], "process_types": {}},
                                  description="Deploy", commit="d" * 40)
        _, token = auth.create_token(db, owner, "after the move")
        db.commit()
        assert release.id == highest + 1
        assert release.version == 1
        assert auth.token_row(db, token).user.email == "ann@example.com"
        shop = apps.by_name(db, "shop")
        assert db.get(Release, shop.current_release_id).version == 1
        assert db.get(Release, shop.pending_release_id).version == 2
        apps.destroy(db, shop, "shop")  # its rows in every table go, on PostgreSQL's checks
        db.commit()
        assert db.scalars(select(Release.app_id).distinct()).all() == [app.id]
    sessions.kw["bind"].dispose()


def test_a_target_that_holds_rows_is_refused(installation: Path, postgres_url: str) -> None:
    assert migrate(installation, postgres_url).returncode == 0
    again = migrate(installation, postgres_url)
    assert again.returncode == 1
    assert "already holds rows (in nodes, " in again.stderr and "users" in again.stderr
    assert every_row(postgres_url) == every_row(f"sqlite:///{installation / 'paas.db'}")


def test_a_row_postgresql_refuses_moves_nothing(installation: Path, postgres_url: str) -> None:
    with sqlite3.connect(installation / "paas.db") as db:  # SQLite does not check lengths
        db.execute("UPDATE domains SET hostname = ? WHERE id = 1", ("h" * 300,))
    result = migrate(installation, postgres_url)
    assert result.returncode == 1
    assert "PostgreSQL refused a row of domains" in result.stderr
    assert "nothing was moved" in result.stderr
    assert not any(every_row(postgres_url).values())


def test_a_table_this_paas_does_not_know_is_refused(installation: Path,
                                                    postgres_url: str) -> None:
    with sqlite3.connect(installation / "paas.db") as db:
        db.execute("CREATE TABLE from_a_newer_paas (id INTEGER PRIMARY KEY)")
    result = migrate(installation, postgres_url)
    assert result.returncode == 1
    assert "from_a_newer_paas" in result.stderr
    assert not any(every_row(postgres_url).values())


def test_bad_targets_are_refused_with_what_to_do(installation: Path) -> None:
    sqlite_target = migrate(installation, f"sqlite:///{installation / 'other.db'}")
    assert sqlite_target.returncode == 1
    assert "is not a PostgreSQL database" in sqlite_target.stderr
    no_file = migrate(installation, "postgresql://a:b@127.0.0.1/x", "--from",
                      str(installation / "missing.db"))
    assert no_file.returncode == 1
    assert "no such SQLite file" in no_file.stderr
