"""A PostgreSQL 15 cluster of the tests' own: `initdb` and `pg_ctl` as an unprivileged user
(Debian's `postgres`, or `nobody`) in a temporary directory, listening on 127.0.0.1 at a port
from tests/platform.py, password-only (scram-sha-256). One per test session and xdist worker
(the `postgres` fixture, tests/conftest.py), started when a test first asks for it and
stopped (`pg_ctl stop -m immediate`, the directory removed) at the session's end. No reliance
on the Debian-managed cluster or its service. Each test gets a database of its own."""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from sqlalchemy.orm import Session

from tests.platform import free_port

BIN = Path("/usr/lib/postgresql/15/bin")
SUPERUSER = "paas_test"


def _run_as() -> pwd.struct_passwd | None:
    """The unprivileged user the server runs as when the tests run as root (postgres refuses
    root); None: the tests' own user."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError("no unprivileged user (postgres, nobody) to run PostgreSQL as")


class Cluster:
    def __init__(self) -> None:
        if not (BIN / "pg_ctl").exists():
            raise RuntimeError(f"{BIN}/pg_ctl is missing: install postgresql-15 (make setup)")
        self.user = _run_as()
        self.base = Path(tempfile.mkdtemp(prefix="paas-pg-"))
        self.data = self.base / "data"
        self.port = free_port()
        self.password = secrets.token_urlsafe(16)
        self._counter = 0
        if self.user is not None:
            os.chown(self.base, self.user.pw_uid, self.user.pw_gid)

    def _pg(self, *args: str) -> None:
        command = [str(BIN / args[0]), *args[1:]]
        if self.user is not None:
            command = ["runuser", "-u", self.user.pw_name, "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120, cwd=self.base)

    def start(self) -> None:
        pwfile = self.base / "pwfile"
        pwfile.write_text(self.password + "\n")
        if self.user is not None:
            os.chown(pwfile, self.user.pw_uid, self.user.pw_gid)
        pwfile.chmod(0o600)
        self._pg("initdb", "-D", str(self.data), "-U", SUPERUSER, "--pwfile", str(pwfile),
                 "--auth", "scram-sha-256", "-E", "UTF8", "--locale", "C.UTF-8")
        pwfile.unlink()
        options = (f"-c listen_addresses=127.0.0.1 -c port={self.port} "
                   f"-c unix_socket_directories={self.base} -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        self._pg("pg_ctl", "start", "-w", "-t", "60", "-D", str(self.data),
                 "-l", str(self.base / "server.log"), "-o", options)

    def stop(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self._pg("pg_ctl", "stop", "-D", str(self.data), "-m", "immediate", "-w")
        finally:
            shutil.rmtree(self.base, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return (f"postgresql://{SUPERUSER}:{self.password}@127.0.0.1:{self.port}/{database}")

    def create_database(self, prefix: str = "t") -> str:
        """A new, empty database; its URL."""
        self._counter += 1
        name = f"{prefix}_{os.getpid()}_{self._counter}"
        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def log(self) -> str:
        try:
            return (self.base / "server.log").read_text(errors="replace")[-5000:]
        except OSError:
            return ""


_shared: list[Cluster] = []


def cluster() -> Cluster:
    """This test process's cluster, started at the first call; tests/conftest.py stops it at
    the session's end."""
    if not _shared:
        started = Cluster()
        try:
            started.start()
        except BaseException:
            started.stop()
            raise
        _shared.append(started)
    return _shared[0]


def stop_cluster() -> None:
    while _shared:
        _shared.pop().stop()


def on_postgres() -> bool:
    """`PAAS_TEST_DATABASE=postgresql` (make test-postgres): the suite's databases (test
    platforms', the unit tests') are PostgreSQL databases on this process's cluster."""
    return os.environ.get("PAAS_TEST_DATABASE", "sqlite") == "postgresql"


def database_url_for(directory: Path) -> str:
    """The database a unit test uses: SQLite in `directory`, or a new PostgreSQL database."""
    if on_postgres():
        return cluster().create_database("unit")
    return f"sqlite:///{directory / 'paas.db'}"


@contextmanager
def session_in(directory: Path) -> Iterator[Session]:
    """A session on the unit test's database (database_url_for), its engine closed after."""
    from paas.models import make_sessionmaker

    sessions = make_sessionmaker(database_url_for(directory))
    try:
        with sessions() as session:
            yield session
    finally:
        sessions.kw["bind"].dispose()
