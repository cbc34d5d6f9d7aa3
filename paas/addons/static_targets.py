"""Where the backups find an app's Postgres add-ons until the add-on servers are merged: a
file the operator (or a test) writes, `$PAAS_HOME/addons/postgres-targets.json`, root's and
not writable by anyone else, listing each add-on as

    [{"app": "shop", "addon": "shop-db", "host": "127.0.0.1", "port": 5432,
      "database": "shop", "superuser": "paas", "password": "...", "sslmode": "require"}]

The add-ons' own source (`paas/addons/postgres.py`: `of_app`, `target_of`) replaces it."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from sqlalchemy.orm import Session

from paas.addons.targets import PostgresTarget
from paas.errors import NotFound, Unavailable
from paas.models import App


class StaticTargets:
    def __init__(self, home: Path) -> None:
        self.path = home / "addons" / "postgres-targets.json"

    def _entries(self) -> list[dict]:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            return []
        with os.fdopen(fd) as file:
            st = os.fstat(file.fileno())
            if st.st_uid != os.geteuid() or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
                raise Unavailable(f"{self.path} must be root's and writable by no one else")
            try:
                entries = json.load(file)
            except ValueError as err:
                raise Unavailable(f"{self.path} is not JSON: {err}") from None
        return [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []

    def addons_of(self, db: Session, app: App) -> list[str]:
        del db
        return sorted(str(e["addon"]) for e in self._entries() if e.get("app") == app.name)

    def target(self, db: Session, app: App, addon: str) -> PostgresTarget:
        del db
        for e in self._entries():
            if e.get("app") == app.name and e.get("addon") == addon:
                return PostgresTarget(host=str(e["host"]), port=int(e["port"]),
                                      database=str(e["database"]),
                                      superuser=str(e["superuser"]),
                                      password=str(e["password"]),
                                      sslmode=str(e.get("sslmode", "require")))
        raise NotFound(f"{app.name} has no Postgres add-on {addon}")
