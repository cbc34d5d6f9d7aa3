"""How the platform, on the host, reaches an add-on's server: the contract between the add-on
servers (`paas/addons/`) and what works on their data from outside (backups, `pg:psql`,
`pg:info`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PostgresTarget:
    """One Postgres server and database, reached as the add-on's superuser (never the app's
    role): backups dump and restore through it."""

    host: str  # an address the host reaches, or a unix socket directory (starts with "/")
    port: int
    database: str
    superuser: str
    password: str
    sslmode: str = "require"

    def libpq_env(self) -> dict[str, str]:
        """The environment for pg_dump/pg_restore/psql: no password on a command line."""
        return {"PGHOST": self.host, "PGPORT": str(self.port), "PGDATABASE": self.database,
                "PGUSER": self.superuser, "PGPASSWORD": self.password, "PGSSLMODE": self.sslmode}
