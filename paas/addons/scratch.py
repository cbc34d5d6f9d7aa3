"""A scratch Postgres server that a backup is restored into to prove it restores.

A dump is the app's data, and restoring runs what it defines (functions in index expressions,
defaults, check constraints). So the scratch server is nobody's but its own: it runs as
SCRATCH_UID (no passwd entry on the host: nss_wrapper names it for initdb), with no
capabilities and no new privileges, in a network namespace of its own with no interface up
(`listen_addresses` empty: only a unix socket, in its 0700 data directory), and the dump is
restored by a role that is not a superuser (`restorer`, owner of the `verify` database),
through pg_restore running as that same uid with the dump as its stdin (root opens the file).
One scratch server runs at a time (a lock); each is deleted when its verification ends.

    $PAAS_HOME/backup-scratch/         root's, 0711
        nss/passwd, nss/group          root's, 0644: the scratch uid's name for libc
        <hex>/                         SCRATCH_UID's, 0700: data/, the socket, the log
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from paas.addons.pgdump import COUNT_SQL, PGBIN, PgError, parse_counts, tail

SCRATCH_UID = 39999  # never an app's (20000 + slot) nor an add-on's (40000 + number)
NSS_WRAPPER = "/usr/lib/x86_64-linux-gnu/libnss_wrapper.so"
RESTORER = "restorer"
DATABASE = "verify"
_START_TIMEOUT = 60


class ScratchServer:
    """A running scratch server (made by `scratch_server`)."""

    def __init__(self, base: Path, directory: Path) -> None:
        self.base = base
        self.dir = directory
        self.data = directory / "data"

    def _env(self) -> dict[str, str]:
        nss = self.base / "nss"
        return {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(self.dir),
                "LD_PRELOAD": NSS_WRAPPER, "NSS_WRAPPER_PASSWD": str(nss / "passwd"),
                "NSS_WRAPPER_GROUP": str(nss / "group"), "PGHOST": str(self.dir),
                "PGUSER": RESTORER, "PGDATABASE": DATABASE, "PGCONNECT_TIMEOUT": "10"}

    def run(self, command: list[str], *, stdin: int | None = None, timeout: float = 120,
            net_namespace: bool = False) -> str:
        """`command` as the scratch uid (in a new network namespace if asked); its stdout."""
        return as_scratch_uid(command, self._env(), cwd=self.dir, stdin=stdin,
                              timeout=timeout, net_namespace=net_namespace)

    def psql(self, sql: str, *, user: str = RESTORER, database: str = DATABASE) -> str:
        return self.run([str(PGBIN / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                         "-U", user, "-d", database, "-c", sql])

    def start(self) -> None:
        self.run([str(PGBIN / "initdb"), "-D", str(self.data), "-U", "scratch", "--auth=trust",
                  "-N", "-E", "UTF8", "--locale=C.UTF-8"])
        options = (f"-k {self.dir} -c listen_addresses= -c fsync=off -c full_page_writes=off "
                   "-c synchronous_commit=off -c max_connections=5")
        self.run([str(PGBIN / "pg_ctl"), "-D", str(self.data), "-w", "-t",
                  str(_START_TIMEOUT), "-l", str(self.dir / "server.log"), "-o", options,
                  "start"], net_namespace=True, timeout=_START_TIMEOUT + 10)
        self.psql(f"CREATE ROLE {RESTORER} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE",
                  user="scratch", database="postgres")
        self.psql(f"CREATE DATABASE {DATABASE} OWNER {RESTORER}", user="scratch",
                  database="postgres")

    def restore(self, dump_fd: int, timeout: float) -> None:
        """Restores the dump (an fd root opened: pg_restore reads and seeks it as stdin) as
        `restorer`, in one transaction that stops at the first error."""
        self.run([str(PGBIN / "pg_restore"), "--no-owner", "--no-privileges",
                  "--no-tablespaces", "--no-publications", "--no-subscriptions",
                  "--no-security-labels", "--single-transaction", "--exit-on-error",
                  "-d", DATABASE], stdin=dump_fd, timeout=timeout)

    def counts(self) -> dict[str, int]:
        return parse_counts(self.psql(COUNT_SQL))

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(PgError):  # not running: its directory goes all the same
                self.run([str(PGBIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate",
                          "-w", "stop"], timeout=30)


def as_scratch_uid(command: list[str], env: dict[str, str], *, cwd: Path | None = None,
                   stdin: int | None = None, timeout: float = 120,
                   net_namespace: bool = False) -> str:
    """Runs `command` as SCRATCH_UID with no capabilities, no new privileges (in a network
    namespace of its own if asked); its stdout, or PgError with what it said."""
    prefix = ["unshare", "--net"] if net_namespace else []
    drop = ["setpriv", f"--reuid={SCRATCH_UID}", f"--regid={SCRATCH_UID}", "--clear-groups",
            "--no-new-privs", "--inh-caps=-all", "--"]
    try:
        done = subprocess.run([*prefix, *drop, *command], env=env, stdin=stdin, cwd=cwd,
                              capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise PgError(f"{Path(command[0]).name} took longer than {timeout:g} s") from None
    if done.returncode != 0:
        said = tail(done.stderr or done.stdout) or f"exit status {done.returncode}"
        raise PgError(f"{Path(command[0]).name}: {said}")
    return done.stdout


def _prepare_base(base: Path) -> None:
    base.mkdir(mode=0o711, exist_ok=True)
    os.chmod(base, 0o711)
    nss = base / "nss"
    nss.mkdir(mode=0o755, exist_ok=True)
    (nss / "passwd").write_text(f"scratch:x:{SCRATCH_UID}:{SCRATCH_UID}::/nonexistent:"
                                "/usr/sbin/nologin\n")
    (nss / "group").write_text(f"scratch:x:{SCRATCH_UID}:\n")
    for name in ("passwd", "group"):
        os.chmod(nss / name, 0o644)


@contextmanager
def scratch_server(base: Path) -> Iterator[ScratchServer]:
    """A fresh scratch server under `base`, stopped and deleted afterwards."""
    _prepare_base(base)
    lock = os.open(base / "lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        remove_leftovers(base)
        directory = base / secrets.token_hex(6)
        directory.mkdir(mode=0o700)
        os.chown(directory, SCRATCH_UID, SCRATCH_UID)
        server = ScratchServer(base, directory)
        try:
            server.start()
            yield server
        finally:
            server.stop()
            shutil.rmtree(directory, ignore_errors=True)  # fd-based: follows no symlink
    finally:
        os.close(lock)


def remove_leftovers(base: Path) -> None:
    """Scratch directories of a process that died (the caller holds the lock)."""
    for entry in base.iterdir():
        if entry.name not in ("nss", "lock") and entry.is_dir() and not entry.is_symlink():
            ScratchServer(base, entry).stop()
            shutil.rmtree(entry, ignore_errors=True)
