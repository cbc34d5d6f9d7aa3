"""An add-on server's entry point, run inside its container as the add-on's uid with the
stack's /usr/bin/python3 (standard library only; nothing of the platform is importable here).

Each start makes the data directory match the add-on's settings, then execs the server (it is
the container's PID 1, so the platform's signals reach it):
    postgres  initdb once (superuser, SCRAM), a self-signed certificate once, pg_hba.conf
              (SSL + SCRAM only), the app's role (its password, not a superuser, its connection
              limit) and its database (owned by it) in single-user mode, then `postgres`
    redis     a config in /tmp (the app's ACL user, AOF in /data, maxmemory and its policy),
              then `redis-server`
The settings come in the environment (ADDON_*), which is cleared before the exec.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

PGBIN = Path("/usr/lib/postgresql/15/bin")
DATA = Path("/data")
SAFE = re.compile(r"^[A-Za-z0-9_-]{1,63}$")  # names and passwords the platform generated


def setting(name: str) -> str:
    value = os.environ.get(f"ADDON_{name}", "")
    if not SAFE.fullmatch(value):
        sys.exit(f"addon: ADDON_{name} is missing or not [A-Za-z0-9_-]")
    return value


def number(name: str) -> int:
    value = setting(name)
    if not value.isdigit():
        sys.exit(f"addon: ADDON_{name} is not a number")
    return int(value)


def say(line: str) -> None:
    print(f"addon: {line}", flush=True)


# ---- postgres ------------------------------------------------------------------------------


def postgres() -> None:
    pgdata = DATA / "pgdata"
    marker = DATA / ".paas-initialized"
    if not marker.exists():
        shutil.rmtree(pgdata, ignore_errors=True)  # an init that did not finish: nothing in it
        initdb(pgdata)
    certificate()
    (pgdata / "pg_hba.conf").write_text(
        "# written by the platform at each start\n"
        "local all all scram-sha-256\n"
        "hostssl all all 0.0.0.0/0 scram-sha-256\n")
    single_user(pgdata, roles_sql(first=not marker.exists()))
    marker.touch()
    connections = number("CONNECTIONS")
    memory_mb = number("MEMORY_MB")
    options = {
        "listen_addresses": "*", "port": setting("PORT"), "unix_socket_directories": "/tmp",
        "ssl": "on", "ssl_cert_file": str(DATA / "server.crt"),
        "ssl_key_file": str(DATA / "server.key"), "password_encryption": "scram-sha-256",
        # the app's limit, and a few for the platform's superuser (backups, pg:info)
        "max_connections": str(connections + 5),
        "superuser_reserved_connections": "3",
        "shared_buffers": f"{max(memory_mb // 4, 16)}MB",
        "effective_cache_size": f"{max(memory_mb // 2, 32)}MB",
        "work_mem": "4MB", "maintenance_work_mem": f"{max(memory_mb // 16, 16)}MB",
        "max_wal_size": "256MB", "dynamic_shared_memory_type": "mmap",
        "log_destination": "stderr", "logging_collector": "off",
    }
    argv = [str(PGBIN / "postgres"), "-D", str(pgdata)]
    for key, value in options.items():
        argv += ["-c", f"{key}={value}"]
    say(f"starting postgres ({connections} connections for the app)")
    exec_server(argv)


def initdb(pgdata: Path) -> None:
    say("initializing the database cluster")
    password = Path("/tmp/superuser-password")
    password.write_text(setting("SUPERUSER_PASSWORD") + "\n")
    password.chmod(0o600)
    run([str(PGBIN / "initdb"), "-D", str(pgdata), "-U", setting("SUPERUSER"),
         f"--pwfile={password}", "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C",
         "--data-checksums"])
    password.unlink()


def certificate() -> None:
    """Self-signed, made once per add-on (apps connect with sslmode=require, as on Heroku)."""
    cert, key = DATA / "server.crt", DATA / "server.key"
    if cert.exists() and key.exists():
        return
    config = Path("/tmp/openssl.cnf")
    config.write_text("[req]\ndistinguished_name=dn\n[dn]\n")
    run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650",
         "-subj", f"/CN={os.environ.get('HOSTNAME', 'addon')}", "-config", str(config),
         "-keyout", str(key), "-out", str(cert)])
    key.chmod(0o600)


def roles_sql(first: bool) -> str:
    user, database = setting("USER"), setting("DATABASE")
    statements = [
        f"ALTER ROLE {setting('SUPERUSER')} PASSWORD '{setting('SUPERUSER_PASSWORD')}';",
        f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{user}') THEN "
        f"CREATE ROLE {user} LOGIN; END IF; END $$;",
        f"ALTER ROLE {user} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION "
        f"NOBYPASSRLS CONNECTION LIMIT {number('CONNECTIONS')} PASSWORD '{setting('PASSWORD')}';",
    ]
    if first:
        statements += [
            f"CREATE DATABASE {database} OWNER {user};",
            f"REVOKE ALL ON DATABASE {database} FROM PUBLIC;",
            "REVOKE ALL ON DATABASE postgres FROM PUBLIC;",
            "REVOKE ALL ON DATABASE template1 FROM PUBLIC;",
        ]
    return "\n\n".join(statements) + "\n\n"


def single_user(pgdata: Path, sql: str) -> None:
    done = subprocess.run([str(PGBIN / "postgres"), "--single", "-j", "-D", str(pgdata),
                           "-c", "unix_socket_directories=/tmp", "-c", "listen_addresses=",
                           "postgres"], input=sql, capture_output=True, text=True, check=False)
    errors = [line for line in done.stdout.splitlines() + done.stderr.splitlines()
              if "ERROR" in line or "FATAL" in line or "PANIC" in line]
    if done.returncode != 0 or errors:
        # Passwords are never printed.
        sys.exit("addon: preparing the roles failed: "
                 + "; ".join(redact(line) for line in errors or [done.stderr[-500:]]))


def redact(line: str) -> str:
    return re.sub(r"PASSWORD '[^']*'", "PASSWORD '***'", line)


# ---- redis ---------------------------------------------------------------------------------


def redis() -> None:
    config = Path("/tmp/redis.conf")
    config.write_text("\n".join([
        "bind 0.0.0.0", f"port {number('PORT')}", "protected-mode no", "daemonize no",
        "dir /data", "appendonly yes", "appendfsync everysec",
        'appenddirname "appendonlydir"', 'save ""',
        f"maxmemory {number('MAXMEMORY_MB')}mb", f"maxmemory-policy {setting('POLICY')}",
        f"maxclients {number('CONNECTIONS')}",
        "user default off",
        f"user {setting('USER')} on >{setting('PASSWORD')} ~* &* +@all -@admin",
        "",
    ]))
    config.chmod(0o600)
    say("starting redis")
    exec_server(["/usr/bin/redis-server", str(config)])


# ---- common --------------------------------------------------------------------------------


def run(argv: list[str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"addon: {Path(argv[0]).name} failed: {(done.stderr or done.stdout)[-800:]}")


def exec_server(argv: list[str]) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("ADDON_")}
    os.execve(argv[0], argv, env)


def main() -> None:
    os.umask(0o077)
    service = os.environ.get("ADDON_SERVICE")
    if service == "postgres":
        postgres()
    elif service == "redis":
        redis()
    else:
        sys.exit(f"addon: unknown service {service!r}")


if __name__ == "__main__":
    main()
