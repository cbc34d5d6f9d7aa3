"""Which database holds the platform's state, and how its writers take turns.

SQLite (a file in PAAS_HOME, the default) or PostgreSQL 15 (`PAAS_DATABASE_URL=postgresql://
user:password@host:port/database`, driven by psycopg 3). Nothing else is supported: the
migrations and the suite run on these two.

Writers. Every write transaction of the API (`api/context.py:Context.write`, the start-up
bootstrap) begins with `serialize_writes`. On SQLite one API process is the only writer and
its in-process lock makes every read-modify-write serial. On PostgreSQL several API processes
may share the database, so the first statement of each write transaction takes one
transaction-scoped advisory lock, the platform's writer lock: write transactions run one at a
time across every process, as on SQLite, and the lock goes with the commit, the rollback or
the connection (an API process that dies holds nothing). Reads take no lock (each statement
sees what was committed before it). Row locks (`SELECT ... FOR UPDATE`) would not do:
the read-modify-writes that need it decide on rows that do not exist yet (the next release
version is max + 1, a new app's slot is the lowest free one, a hostname is free when no
domain or wildcard of another app covers it, a node's capacity is the sum of what is
assigned to it), and a row lock cannot lock an absent row. docs/ARCHITECTURE.md lists them.
"""

from __future__ import annotations

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session

EXAMPLE = "postgresql://paas:SECRET@127.0.0.1:5432/paas"

# Advisory lock keys (64-bit), one per purpose: "paaswrit" and "paasmigr" in ASCII.
WRITER_LOCK = int.from_bytes(b"paaswrit", "big")
MIGRATION_LOCK = int.from_bytes(b"paasmigr", "big")

_POSTGRES_SCHEMES = {"postgresql", "postgres", "postgresql+psycopg"}


class DatabaseUrlError(ValueError):
    """A PAAS_DATABASE_URL the platform cannot use; the message says why."""


def engine_url(url: str) -> URL:
    """`url` as SQLAlchemy opens it: `postgresql://` and `postgres://` go through psycopg 3
    (SQLAlchemy's default PostgreSQL driver would be psycopg2, which paas does not use)."""
    check(url)
    parsed = make_url(url)
    if parsed.drivername in _POSTGRES_SCHEMES:
        return parsed.set(drivername="postgresql+psycopg")
    return parsed


def check(url: str) -> None:
    """Raises DatabaseUrlError when the URL names no database paas can run on."""
    scheme = url.partition("://")[0]
    if scheme == "postgres":
        url = "postgresql" + url[len("postgres"):]
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise DatabaseUrlError("is not a database URL") from None
    if parsed.drivername in _POSTGRES_SCHEMES or scheme == "postgres":
        if not parsed.database:
            raise DatabaseUrlError("names no database (the path after the host)")
        if not parsed.host and "host" not in parsed.query:
            raise DatabaseUrlError("names no host (an address, or ?host=/a/socket/dir)")
        return
    if parsed.drivername == "sqlite":
        if parsed.database in (None, "", ":memory:"):
            raise DatabaseUrlError("names no SQLite file (sqlite:////absolute/path.db)")
        return
    raise DatabaseUrlError(f"{parsed.drivername!r} is not supported: use PostgreSQL "
                           "(postgresql://...) or SQLite (sqlite:////path.db)")


def is_postgres(url: str) -> bool:
    return engine_url(url).get_backend_name() == "postgresql"


def shown(url: str) -> str:
    """The URL with its password masked, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        from paas.redact import redact

        return redact(url)


def serialize_writes(db: Session) -> None:
    """The first statement of every write transaction (see the module's docstring)."""
    if db.get_bind().dialect.name == "postgresql":
        db.connection().exec_driver_sql(f"SELECT pg_advisory_xact_lock({WRITER_LOCK})")
