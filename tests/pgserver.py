"""A real PostgreSQL 15 server for the backup tests, set up as a Postgres add-on is: its own
unprivileged uid, TCP on loopback (a port from PAAS_TEST_PORTS) with SSL only (a self-signed
certificate) and SCRAM passwords, a superuser the platform uses and an app role that owns its
database and is not a superuser. Until the add-on servers land, `PostgresTarget`s point here."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from paas.addons.targets import PostgresTarget
from tests.platform import free_port

PGBIN = Path("/usr/lib/postgresql/15/bin")
NSS_WRAPPER = "/usr/lib/x86_64-linux-gnu/libnss_wrapper.so"
UID = 39990  # the tests' "add-on"; the platform's scratch server is 39999


@dataclass
class PgServer:
    base: Path
    port: int
    superuser_password: str = field(default_factory=lambda: secrets.token_hex(12))
    app_password: str = field(default_factory=lambda: secrets.token_hex(12))
    database: str = "shop"
    app_role: str = "shop"

    @classmethod
    def start(cls) -> PgServer:
        base = Path(tempfile.mkdtemp(prefix="paas-pg-"))
        base.chmod(0o755)
        server = cls(base, free_port())
        try:
            server._init()
        except BaseException:
            server.stop()
            raise
        return server

    @property
    def data(self) -> Path:
        return self.base / "run" / "data"

    def _env(self) -> dict[str, str]:
        return {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "LD_PRELOAD": NSS_WRAPPER,
                "NSS_WRAPPER_PASSWD": str(self.base / "passwd"),
                "NSS_WRAPPER_GROUP": str(self.base / "group")}

    def _as_server(self, *command: str, stdin: str | None = None) -> str:
        done = subprocess.run(["setpriv", f"--reuid={UID}", f"--regid={UID}", "--clear-groups",
                               "--", *command], env=self._env(), input=stdin,
                              capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise AssertionError(f"{command[0]} failed: {done.stderr}{done.stdout}")
        return done.stdout

    def _init(self) -> None:
        (self.base / "passwd").write_text(f"pg:x:{UID}:{UID}::/nonexistent:/bin/false\n")
        (self.base / "group").write_text(f"pg:x:{UID}:\n")
        run = self.base / "run"
        run.mkdir(mode=0o700)
        os.chown(run, UID, UID)
        pwfile = run / "pw"
        pwfile.write_text(self.superuser_password)
        os.chown(pwfile, UID, UID)
        self._as_server(str(PGBIN / "initdb"), "-D", str(self.data), "-U", "paas",
                        "--auth-local=scram-sha-256", "--auth-host=scram-sha-256",
                        f"--pwfile={pwfile}", "-E", "UTF8", "--locale=C.UTF-8", "-N")
        pwfile.unlink()
        self._as_server("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days",
                        "2", "-subj", "/CN=localhost", "-keyout", str(self.data / "server.key"),
                        "-out", str(self.data / "server.crt"))
        (self.data / "pg_hba.conf").write_text(
            "local all all scram-sha-256\nhostssl all all 127.0.0.1/32 scram-sha-256\n")
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(f"port = {self.port}\nlisten_addresses = '127.0.0.1'\nssl = on\n"
                       f"unix_socket_directories = '{run}'\nfsync = off\n")
        self._as_server(str(PGBIN / "pg_ctl"), "-D", str(self.data), "-w", "-l",
                        str(run / "server.log"), "start")
        self.sql(f"CREATE ROLE {self.app_role} LOGIN PASSWORD '{self.app_password}' "
                 "NOSUPERUSER NOCREATEDB NOCREATEROLE")
        self.sql(f"CREATE DATABASE {self.database} OWNER {self.app_role}")

    def target(self) -> PostgresTarget:
        return PostgresTarget(host="127.0.0.1", port=self.port, database=self.database,
                              superuser="paas", password=self.superuser_password)

    def sql(self, sql: str, *, as_app: bool = False, database: str | None = None) -> str:
        """Rows of `sql` (unaligned, tab-separated), over TCP with SSL required."""
        user, password = ((self.app_role, self.app_password) if as_app
                          else ("paas", self.superuser_password))
        db = database or (self.database if as_app else "postgres")
        env = {"PGHOST": "127.0.0.1", "PGPORT": str(self.port), "PGUSER": user,
               "PGPASSWORD": password, "PGDATABASE": db, "PGSSLMODE": "require",
               "PATH": "/usr/bin:/bin"}
        done = subprocess.run([str(PGBIN / "psql"), "-X", "-q", "-A", "-t", "-F", "\t",
                               "-v", "ON_ERROR_STOP=1"], input=sql, env=env,
                              capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise AssertionError(f"psql failed: {done.stderr}")
        return done.stdout

    def app_sql(self, sql: str) -> str:
        return self.sql(sql, as_app=True)

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            subprocess.run(["setpriv", f"--reuid={UID}", f"--regid={UID}", "--clear-groups",
                            "--", str(PGBIN / "pg_ctl"), "-D", str(self.data), "-m",
                            "immediate", "-w", "stop"], env=self._env(), capture_output=True,
                           timeout=60, check=False)
        shutil.rmtree(self.base, ignore_errors=True)
