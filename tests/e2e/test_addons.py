"""Add-ons on the real servers: a Django app (dj-database-url, the pure-Python psycopg against
the stack's libpq5, sslmode=require, `release: python manage.py migrate`) keeps its rows in its
Postgres add-on across a redeploy, ps:restart, a plan change, rotated credentials and
`paas down`/`paas up`; only attached apps reach the server (a detach revokes at once); a
second server on one data directory is refused; a SIGKILLed server loses no committed row;
Redis persists across a restart. The tests of this module run in order on one platform."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import psycopg
import pytest

from tests.e2e.test_dynos import eventually
from tests.platform import PAAS, Platform, app_repo, commit_all, git

pytestmark = pytest.mark.e2e

CONNECT = ("/usr/bin/python3 -c \"import socket,sys; socket.create_connection("
           "(sys.argv[1], int(sys.argv[2])), 3); print('connected')\"")


@pytest.fixture(scope="module")
def platform() -> Iterator[Platform]:
    platform = Platform.create()
    try:
        platform.up()
        yield platform
    finally:
        platform.down()


def addon(platform: Platform, app: str, name: str) -> dict[str, Any]:
    return json.loads(platform.paas("addons:info", name, "-a", app, "--json").stdout)


def config(platform: Platform, app: str) -> dict[str, str]:
    return json.loads(platform.paas("config", "-a", app, "--json").stdout)


def releases(platform: Platform, app: str) -> list[str]:
    return [r["description"] for r in
            json.loads(platform.paas("releases", "-a", app, "--json").stdout)]


def run(platform: Platform, app: str, line: str, timeout: float = 120
        ) -> subprocess.CompletedProcess[str]:
    return platform.paas("run", "-a", app, "--", line, check=False, timeout=timeout)


def reaches(platform: Platform, app: str, url: str) -> bool:
    where = urlparse(url)
    return run(platform, app, f"{CONNECT} {where.hostname} {where.port}").returncode == 0


def notes(platform: Platform) -> list[str]:
    return platform.get("shop", "/notes").json()


def deployed(platform: Platform, repo: Path, app: str) -> None:
    result = git(repo, "push", platform.remote_url(app), "main", check=False)
    assert result.returncode == 0, result.stderr
    assert "Running release command" in result.stderr, result.stderr


def superuser(platform: Platform, name: str) -> psycopg.Connection[Any]:
    """The add-on's server as the platform reaches it from the host (paas.addons.postgres)."""
    code = ("import json, sys; from paas.settings import Settings; from paas.models import "
            "make_sessionmaker, Addon; from paas.addons.postgres import target_of; "
            "from sqlalchemy import select; s = Settings(); db = make_sessionmaker("
            "s.database_url)(); a = db.scalar(select(Addon).where(Addon.name == sys.argv[1])); "
            "print(json.dumps(target_of(a, s).libpq_env()))")
    env = json.loads(subprocess.run([sys.executable, "-c", code, name],
                                    env=platform.env, capture_output=True, text=True,
                                    check=True).stdout)
    return psycopg.connect(host=env["PGHOST"], port=env["PGPORT"], dbname=env["PGDATABASE"],
                           user=env["PGUSER"], password=env["PGPASSWORD"], sslmode="require",
                           autocommit=True, connect_timeout=5)


def test_a_django_app_keeps_its_rows_in_its_postgres(platform: Platform,
                                                     tmp_path: Path) -> None:
    platform.paas("apps:create", "shop")
    created = platform.paas("addons:create", "postgres", "-a", "shop")
    assert "shop-postgres (postgres:mini) is available; attached as DATABASE_URL" in \
        created.stdout, created.stdout + created.stderr
    url = config(platform, "shop")["DATABASE_URL"]
    assert url.startswith("postgres://") and url.endswith("?sslmode=require")

    repo = app_repo(tmp_path, "django-pg")
    deployed(platform, repo, "shop")  # `release: manage.py migrate` ran against it
    info = platform.wait_for("shop", '"notes": 0').json()
    assert info["ssl"] is True and info["libpq"] == "python", info  # psycopg on libpq5
    for text in ("one", "two"):
        posted = httpx.post(f"http://127.0.0.1:{platform.router_port}/notes", content=text,
                            headers={"Host": "shop.localhost"}, timeout=30)
        assert posted.status_code == 200, posted.text
    assert notes(platform) == ["one", "two"]

    (repo / "README").write_text("redeploy\n")
    commit_all(repo, "redeploy")
    deployed(platform, repo, "shop")
    assert notes(platform) == ["one", "two"]

    platform.paas("ps:restart", "-a", "shop")
    eventually(lambda: platform.get("shop", "/notes").status_code == 200, 60)
    assert notes(platform) == ["one", "two"]

    _down_up(platform)
    platform.wait_for("shop", '"notes": 2', timeout=120)
    assert notes(platform) == ["one", "two"]


def _down_up(platform: Platform) -> None:
    """`paas down` (every dyno, server, mount and network gone), then `paas up`."""
    platform.stop_control_plane()
    platform.paas("down", timeout=180)
    platform.up()


def test_pg_info_and_psql(platform: Platform) -> None:
    def pg_info() -> dict[str, Any] | None:  # the server may still be back from paas down/up
        info = json.loads(platform.paas("pg:info", "-a", "shop", "--json").stdout)
        return info if info["server"] else None

    info = eventually(pg_info, 90, "pg:info to reach the server")
    server = info["server"]
    assert server["version"].startswith("15.") and server["ssl"] is True
    assert server["connection_limit"] == 20 and info["limits"]["disk_mb"] == 1024
    assert server["tables"] >= 1 and server["data_size_bytes"] > 0

    # without a terminal, stdin goes to psql in a one-off dyno of the app, as its own user
    done = subprocess.run([PAAS, "pg:psql", "-a", "shop"],
                          input="SELECT count(*) AS n FROM notes_note;\n"
                                "SELECT rolsuper FROM pg_roles WHERE rolname = current_user;\n",
                          env=platform.env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = [line.strip() for line in done.stdout.splitlines()]
    assert "2" in lines and "f" in lines, done.stdout  # two rows; not a superuser


def test_only_attached_apps_reach_the_database(platform: Platform, tmp_path: Path) -> None:
    platform.paas("apps:create", "other")
    other = app_repo(tmp_path, "procfile-only")
    assert git(other, "push", platform.remote_url("other"), "main",
               check=False).returncode == 0
    url = config(platform, "shop")["DATABASE_URL"]
    assert reaches(platform, "shop", url)  # the positive control
    assert not reaches(platform, "other", url)  # another app's dyno cannot

    attached = platform.paas("addons:attach", "shop-postgres", "-a", "other")
    assert "done, as DATABASE_URL" in attached.stdout
    assert "Attach shop-postgres as DATABASE" in releases(platform, "other")
    other_url = config(platform, "other")["DATABASE_URL"]
    assert urlparse(other_url).hostname != urlparse(url).hostname  # on other's own network
    assert reaches(platform, "other", other_url)
    counted = run(platform, "other", '/usr/lib/postgresql/15/bin/psql -XAt "$DATABASE_URL" '
                                     '-c "SELECT count(*) FROM notes_note"')
    assert counted.stdout.strip().endswith("2"), counted.stdout + counted.stderr

    refused = platform.paas("addons:destroy", "shop-postgres", "-a", "shop", "--confirm",
                            "shop", check=False)
    assert refused.returncode != 0 and "attached to other too" in refused.stderr

    platform.paas("addons:detach", "shop-postgres", "-a", "other")
    assert "DATABASE_URL" not in config(platform, "other")
    assert not reaches(platform, "other", other_url)  # revoked at once
    assert reaches(platform, "shop", url)
    assert notes(platform) == ["one", "two"]


def test_bad_input_gets_clear_messages(platform: Platform) -> None:
    cases = {
        ("addons:create", "mysql", "-a", "shop"): "no add-on service 'mysql'",
        ("addons:create", "postgres:huge", "-a", "shop"): "postgres has no plan 'huge'",
        ("addons:create", "postgres", "--name", "shop-postgres", "-a", "shop"):
            "the add-on name shop-postgres is in use",
        ("addons:create", "postgres", "-a", "shop"): "attached as DATABASE already",
        ("addons:destroy", "shop-postgres", "-a", "shop"): "confirm with --confirm shop",
        ("addons:info", "nope", "-a", "shop"): "no add-on named 'nope'",
        ("addons:detach", "shop-postgres", "-a", "shop"): "shop owns shop-postgres",
    }
    for args, message in cases.items():
        done = platform.paas(*args, check=False)
        assert done.returncode != 0 and message in done.stderr, (args, done.stderr)
    assert notes(platform) == ["one", "two"]  # the platform and the app keep working


def test_a_second_server_on_the_same_data_is_refused(platform: Platform) -> None:
    code = ("import sys; from paas.settings import Settings; from paas.runtime import Runtime; "
            "from paas.runtime.addonservers import AddonServers; from paas.models import "
            "make_sessionmaker, Addon; from paas.addons import addons; from sqlalchemy import "
            "select; from paas.errors import Conflict\n"
            "s = Settings(); db = make_sessionmaker(s.database_url)()\n"
            "a = db.scalar(select(Addon).where(Addon.name == 'shop-postgres'))\n"
            "want = addons.desired_of(db, a, s.dyno_subnet)\n"
            "try:\n    AddonServers(s, Runtime(s)).start(want)\nexcept Conflict as e:\n"
            "    print('refused:', e.message); sys.exit(0)\n"
            "sys.exit('a second server started')\n")
    done = subprocess.run([sys.executable, "-c", code], env=platform.env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "in use by a running server" in done.stdout
    # the positive control: the lock is the running server's
    lock = platform.home / "addons" / "shop-postgres" / "data.lock"
    holders = subprocess.run(["fuser", str(lock)], capture_output=True, text=True)
    assert holders.stdout.split(), "nothing holds the data lock"
    assert notes(platform) == ["one", "two"]


def test_a_killed_server_loses_no_committed_row(platform: Platform) -> None:
    with superuser(platform, "shop-postgres") as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS crash (id int PRIMARY KEY)")
    committed: list[int] = []
    stop = threading.Event()

    def write() -> None:
        try:
            with superuser(platform, "shop-postgres") as conn:
                n = 0
                while not stop.is_set():
                    n += 1
                    conn.execute("INSERT INTO crash VALUES (%s)", (n,))
                    committed.append(n)  # autocommit: acknowledged = committed
        except psycopg.Error:
            pass

    writer = threading.Thread(target=write)
    writer.start()
    eventually(lambda: len(committed) > 200, 30, "the writer to commit rows")
    init = platform.home / "addons" / "shop-postgres" / "addon-shop-postgres" / "init.pid"
    os.kill(int(init.read_text()), signal.SIGKILL)
    writer.join(30)
    stop.set()
    assert committed

    def available() -> bool:
        return addon(platform, "shop", "shop-postgres")["state"] == "available"

    eventually(available, 90, "the server to be back")
    found: set[int] = set()

    def read_back() -> bool:  # "available" can be from before the agent saw the kill
        try:
            with superuser(platform, "shop-postgres") as conn:
                found.update(row[0] for row in conn.execute("SELECT id FROM crash"))
        except psycopg.Error:
            return False
        return True

    eventually(read_back, 90, "the server to answer after crash recovery")
    assert set(committed) <= found
    eventually(lambda: platform.get("shop", "/notes").status_code == 200, 60)
    assert notes(platform) == ["one", "two"]


def test_upgrade_and_rotate_keep_the_data(platform: Platform) -> None:
    before = config(platform, "shop")["DATABASE_URL"]
    platform.paas("addons:upgrade", "shop-postgres", "basic", "-a", "shop", timeout=240)
    info = json.loads(platform.paas("pg:info", "-a", "shop", "--json").stdout)
    assert info["plan"] == "postgres:basic" and info["server"]["connection_limit"] == 50
    eventually(lambda: platform.get("shop", "/notes").status_code == 200, 180,
               "the app served after the stop-first upgrade")
    assert notes(platform) == ["one", "two"]

    platform.paas("pg:credentials:rotate", "-a", "shop", timeout=240)
    after = config(platform, "shop")["DATABASE_URL"]
    assert after != before and urlparse(after).hostname == urlparse(before).hostname
    assert "Update DATABASE_URL for shop-postgres" in releases(platform, "shop")
    eventually(lambda: platform.get("shop", "/notes").status_code == 200, 180,
               "the app served with the rotated password")
    assert notes(platform) == ["one", "two"]


def test_redis_persists_across_a_restart(platform: Platform) -> None:
    created = platform.paas("addons:create", "redis", "-a", "shop")
    assert "attached as REDIS_URL" in created.stdout
    assert "Attach shop-redis as REDIS" in releases(platform, "shop")
    cli = 'redis-cli --no-auth-warning -u "$REDIS_URL" '
    assert run(platform, "shop", cli + "SET kept yes").stdout.strip().endswith("OK")
    memory = run(platform, "shop", cli + "INFO memory").stdout
    assert "maxmemory:67108864" in memory and "maxmemory_policy:allkeys-lru" in memory
    denied = run(platform, "shop", cli + "CONFIG GET maxmemory").stdout
    assert "NOPERM" in denied  # the plan's limits are not the app's to change
    nopass = run(platform, "shop", 'redis-cli -h "$(echo $REDIS_URL | sed "s/.*@//; s/:.*//")" '
                                   "GET kept").stdout
    assert "NOAUTH" in nopass

    platform.paas("addons:upgrade", "shop-redis", "basic", "-a", "shop", timeout=240)
    assert run(platform, "shop", cli + "GET kept").stdout.strip().endswith("yes")
    _down_up(platform)
    # The add-on's state can still read "available" from before the restart: ask the server.
    eventually(lambda: run(platform, "shop", cli + "GET kept").stdout.strip().endswith("yes"),
               90, "the key back after paas down/up")


def test_destroy_removes_the_server_and_its_data(platform: Platform) -> None:
    data = platform.home / "addons" / "shop-redis"
    assert data.exists()
    platform.paas("addons:destroy", "shop-redis", "-a", "shop", "--confirm", "shop")
    assert "REDIS_URL" not in config(platform, "shop")
    eventually(lambda: not data.exists(), 60, "the data to go")
    listed = json.loads(platform.paas("addons", "-a", "shop", "--json").stdout)
    assert [a["name"] for a in listed] == ["shop-postgres"]
