"""Restoring a backup into a Postgres add-on (`pg:backups:restore`), never as a superuser.

The dump is the app's data and runs what it defines while it is restored, so it is restored
by a role of the moment that is not a superuser (`paas_restore_<hex>`, a member of the
database's owner: pg_restore's `--role` makes the owner own what it creates, and the session
cannot go back to anything more than that temporary role), by pg_restore running as the
unprivileged scratch uid. `--clean --if-exists` replaces the objects the dump holds, all in
one transaction: a restore that fails changes nothing. Nothing else is stopped: the app's
connections stay (a table they hold locks on waits for them)."""

from __future__ import annotations

import secrets
import subprocess

from paas.addons.pgdump import CONNECT_TIMEOUT, PGBIN, PgError, tail
from paas.addons.scratch import as_scratch_uid
from paas.addons.targets import PostgresTarget


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def superuser_sql(target: PostgresTarget, sql: str, timeout: float = 60) -> list[list[str]]:
    try:
        done = subprocess.run([str(PGBIN / "psql"), "-X", "-q", "-A", "-t", "-F", "\t",
                               "-v", "ON_ERROR_STOP=1", "-c", sql],
                              env={**target.libpq_env(), "PGCONNECT_TIMEOUT": CONNECT_TIMEOUT},
                              capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise PgError(f"the database did not answer within {timeout:g} s") from None
    if done.returncode != 0:
        raise PgError(f"psql: {tail(done.stderr) or f'exit status {done.returncode}'}")
    return [line.split("\t") for line in done.stdout.splitlines() if line]


def database_owner(target: PostgresTarget) -> str:
    rows = superuser_sql(target, "SELECT r.rolname, r.rolsuper FROM pg_database d JOIN "
                         "pg_roles r ON r.oid = d.datdba WHERE d.datname = current_database()")
    if not rows:
        raise PgError("the database has no owner")
    owner, is_super = rows[0]
    if is_super == "t":
        raise PgError(f"the database's owner {owner} is a superuser: a backup is restored as "
                      "the owner, never as a superuser")
    return owner


def restore_into(target: PostgresTarget, dump_fd: int, timeout: float) -> None:
    owner = database_owner(target)
    role, password = f"paas_restore_{secrets.token_hex(4)}", secrets.token_hex(16)
    superuser_sql(target, f"CREATE ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE "
                  f"NOINHERIT PASSWORD '{password}' IN ROLE {quote_ident(owner)}; GRANT CONNECT "
                  f"ON DATABASE {quote_ident(target.database)} TO {role}")
    try:
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/",
               **target.libpq_env(), "PGUSER": role, "PGPASSWORD": password,
               "PGCONNECT_TIMEOUT": CONNECT_TIMEOUT}
        as_scratch_uid([str(PGBIN / "pg_restore"), "--no-owner", "--no-privileges",
                        "--no-tablespaces", "--no-publications", "--no-subscriptions",
                        "--no-security-labels", "--clean", "--if-exists",
                        "--single-transaction", "--exit-on-error", f"--role={owner}",
                        "-d", target.database], env, stdin=dump_fd, timeout=timeout)
    finally:
        superuser_sql(target, f"REVOKE CONNECT ON DATABASE {quote_ident(target.database)} "
                      f"FROM {role}; DROP OWNED BY {role}; DROP ROLE {role}")
