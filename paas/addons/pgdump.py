"""Capturing a Postgres database through a `PostgresTarget`: a psql session that holds a
REPEATABLE READ transaction and exports its snapshot, per-table row counts taken in that
snapshot, and `pg_dump -Fc --snapshot` of exactly that state into a file (watched for size
while it grows, so a full store stops it with a clear message)."""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from paas.addons.targets import PostgresTarget

PGBIN = Path("/usr/lib/postgresql/15/bin")
CONNECT_TIMEOUT = "10"
_MARKER = "--paas-answer-end--"

# {"schema.table": rows} for every ordinary table of the database's own schemas (not the
# catalogs, not the tables of extensions, which pg_dump leaves to CREATE EXTENSION). The
# counts run inside one statement, so in the snapshot of its transaction.
COUNT_SQL = r"""
SELECT coalesce(jsonb_object_agg(format('%I.%I', n.nspname, c.relname),
         (xpath('/row/n/text()', query_to_xml(format('SELECT count(*) AS n FROM ONLY %I.%I',
                                              n.nspname, c.relname), false, true, '')))[1]
           ::text::bigint), '{}'::jsonb)::text
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind = 'r' AND c.relpersistence <> 't'
   AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_%'
   AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                   AND d.objid = c.oid AND d.deptype = 'e');
""".replace("\n", " ").strip()


class PgError(Exception):
    """A Postgres client failed; the message is what it said (last lines)."""


class StoreFull(PgError):
    """The dump outgrew the room the backup store has."""


def tail(text: str, limit: int = 400) -> str:
    return " ".join(text.split())[-limit:]


class SnapshotSession:
    """`with SnapshotSession(target) as s:` a psql session in a read-only REPEATABLE READ
    transaction; `s.snapshot` is its exported snapshot, `s.counts()` counts rows in it."""

    def __init__(self, target: PostgresTarget, timeout: float = 60) -> None:
        self.target = target
        self.timeout = timeout
        self.snapshot = ""
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed in __exit__
        self._proc: subprocess.Popen[bytes] | None = None
        self._buffer = b""

    def __enter__(self) -> SnapshotSession:
        self._proc = subprocess.Popen(
            [str(PGBIN / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"],
            env={**self.target.libpq_env(), "PGCONNECT_TIMEOUT": CONNECT_TIMEOUT},
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr)
        self.ask("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY;")
        self.snapshot = self.ask("SELECT pg_export_snapshot();").strip()
        if not self.snapshot:
            raise PgError("the database exported no snapshot")
        return self

    def counts(self) -> dict[str, int]:
        return parse_counts(self.ask(COUNT_SQL))

    def ask(self, sql: str) -> str:
        """The output of `sql` (a marker line ends it, so a silent statement answers too)."""
        assert self._proc is not None and self._proc.stdin is not None
        try:
            self._proc.stdin.write(f"{sql}\n\\echo {_MARKER}\n".encode())
            self._proc.stdin.flush()
        except BrokenPipeError:
            raise PgError(self._failure()) from None
        return self._read_answer()

    def _read_answer(self) -> str:
        assert self._proc is not None and self._proc.stdout is not None
        end = f"{_MARKER}\n".encode()
        deadline = time.monotonic() + self.timeout
        with selectors.DefaultSelector() as sel:
            sel.register(self._proc.stdout, selectors.EVENT_READ)
            while end not in self._buffer:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise PgError(f"the database did not answer within {self.timeout:g} s")
                if not sel.select(left):
                    continue
                piece = os.read(self._proc.stdout.fileno(), 65536)
                if not piece:
                    raise PgError(self._failure())
                self._buffer += piece
        answer, _, self._buffer = self._buffer.partition(end)
        return answer.decode(errors="replace")

    def _failure(self) -> str:
        assert self._proc is not None
        try:
            self._proc.wait(5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
        self._stderr.seek(0)
        said = tail(self._stderr.read().decode(errors="replace"))
        return f"psql: {said or f'exit status {self._proc.returncode}'}"

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 trace: TracebackType | None) -> None:
        if self._proc is not None:
            try:
                if self._proc.stdin is not None:
                    self._proc.stdin.write(b"ROLLBACK;\n\\q\n")
                    self._proc.stdin.close()
                self._proc.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self._proc.kill()
                self._proc.wait()
        self._stderr.close()


def parse_counts(text: str) -> dict[str, int]:
    """COUNT_SQL's one line of JSON as {table: rows}."""
    try:
        raw = json.loads(text.strip() or "{}")
    except ValueError:
        raise PgError(f"unexpected answer to the row counts: {tail(text, 200)}") from None
    if not isinstance(raw, dict) or not all(isinstance(v, int) for v in raw.values()):
        raise PgError(f"unexpected answer to the row counts: {tail(text, 200)}")
    return {str(k): int(v) for k, v in raw.items()}


def dump(target: PostgresTarget, snapshot: str, out: Path, *, room: Callable[[int], int],
         progress: Callable[[int], None], timeout: float) -> int:
    """pg_dump -Fc of the snapshot into `out`; its size. `room(size)` is how many more bytes
    the store allows (checked every half second): below zero, the dump is stopped (StoreFull)."""
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            [str(PGBIN / "pg_dump"), "-Fc", "--no-password", f"--snapshot={snapshot}",
             "-f", str(out)],
            env={**target.libpq_env(), "PGCONNECT_TIMEOUT": CONNECT_TIMEOUT},
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + timeout
        try:
            while proc.poll() is None:
                size = _size(out)
                if room(size) < 0:
                    raise StoreFull(f"{size} bytes written")
                if time.monotonic() > deadline:
                    raise PgError(f"pg_dump took longer than {timeout:g} s")
                progress(size)
                time.sleep(0.5)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        err.seek(0)
        said = err.read().decode(errors="replace")
    if proc.returncode != 0:
        if "No space left on device" in said:
            raise StoreFull(tail(said))
        raise PgError(f"pg_dump: {tail(said) or f'exit status {proc.returncode}'}")
    size = _size(out)
    progress(size)
    return size


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0
