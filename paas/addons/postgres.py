"""How the host reaches a Postgres add-on as its superuser (`target_of`: the contract of
`paas/addons/targets.py`, used by backups), and `pg:info`'s figures read through it."""

from __future__ import annotations

import subprocess
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, object_session

from paas.addons import addons, plans
from paas.addons.targets import PostgresTarget
from paas.errors import Conflict, Invalid, Unavailable
from paas.models import Addon, AddonState
from paas.runtime.network import addon_ip, app_network
from paas.settings import Settings

PSQL = "/usr/lib/postgresql/15/bin/psql"
QUERY_TIMEOUT = 15


def target_of(addon: Addon, settings: Settings) -> PostgresTarget:
    """The add-on's server as its superuser, at its address on its owner's network (which
    the host reaches through the owner app's bridge), with SSL."""
    if addon.service != "postgres":
        raise Invalid(f"{addon.name} is a {addon.service} add-on, not postgres")
    db = object_session(addon)
    if db is None:
        raise RuntimeError("target_of needs an add-on loaded in a session")
    found = [a for a in addons.all_attachments(db, addon) if a.app_id == addon.app_id]
    if addon.state == AddonState.DESTROYED or not found:
        raise Conflict(f"{addon.name} has no server any more (destroyed)")
    subnet = addons.subnet_of(db, addon, settings.dyno_subnet)
    host = addon_ip(app_network(subnet, found[0].app.slot), found[0].address_index)
    return PostgresTarget(host=host, port=plans.SERVICES["postgres"].port,
                          database=addon.database, superuser=addons.SUPERUSER,
                          password=addon.superuser_password)


def query(target: PostgresTarget, sql: str) -> list[list[str]]:
    """Rows of `sql` run by psql as the superuser (tab-separated, unaligned)."""
    try:
        done = subprocess.run([PSQL, "-X", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1",
                               "-c", sql], env={**target.libpq_env(), "PGCONNECT_TIMEOUT": "5"},
                              capture_output=True, text=True, timeout=QUERY_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        raise Unavailable("the database did not answer within "
                          f"{QUERY_TIMEOUT} s") from None
    if done.returncode != 0:
        raise Unavailable(f"the database did not answer: {done.stderr.strip()[-300:]}")
    return [line.split("\t") for line in done.stdout.splitlines() if line]


INFO_SQL = """
SELECT current_setting('server_version'),
       pg_database_size(current_database()),
       (SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
          AND usename <> current_user),
       (SELECT count(*) FROM pg_stat_user_tables),
       (SELECT rolconnlimit FROM pg_roles WHERE rolname = %(user)s),
       current_setting('ssl')
"""


def info(db: Session, addon: Addon, settings: Settings) -> dict[str, Any]:
    """`pg:info`: what the add-on is (plan, limits, state) and, while it is available, what
    its server says (version, data size, the app's connections, tables)."""
    shown = addons.to_dict(db, addon)
    if addon.state != AddonState.AVAILABLE:
        return {**shown, "server": None}
    target = target_of(addon, settings)
    sql = INFO_SQL.replace("%(user)s", f"'{addon.username}'")  # platform-made: [a-z0-9]
    version, size, connections, tables, limit, ssl = query(target, sql)[0]
    return {**shown, "server": {
        "version": version, "data_size_bytes": int(size), "connections": int(connections),
        "connection_limit": int(limit), "tables": int(tables), "ssl": ssl == "on"}}


def of_app(db: Session, app_id: int) -> list[Addon]:
    return list(db.scalars(select(Addon).where(Addon.app_id == app_id,
                                               Addon.service == "postgres")))
