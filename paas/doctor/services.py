"""The services the platform keeps its state in: Redis and the database reachable, and their
clocks agreeing with this host's (skew breaks tokens, leases and node heartbeats)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator

from paas.doctor import Finding, passed, problem
from paas.settings import Settings

AREA = "services"
MAX_SKEW = 2.0  # seconds


def check(settings: Settings) -> Iterator[Finding]:
    yield from _redis(settings)
    yield from _database(settings)


def platform_up(settings: Settings) -> bool:
    try:
        os.kill(int((settings.home / "paas-up.pid").read_text()), 0)
    except (OSError, ValueError):
        return False
    return True


def _redis(settings: Settings) -> Iterator[Finding]:
    import redis

    from paas import redis_clients

    if not settings.redis_url_override and not platform_up(settings):
        yield passed(AREA, "redis", "the platform's own Redis is not running: paas up starts it")
        return
    try:
        client = redis_clients.client(settings.redis_url)
        seconds, micros = client.time()
    except redis.RedisError as error:
        yield problem(AREA, "redis", f"cannot reach Redis at {settings.redis_url}: {error}",
                      "start it (paas up starts its own), or fix PAAS_REDIS_URL")
        return
    yield passed(AREA, "redis", f"Redis answers at {settings.redis_url}")
    yield _skew("redis clock", lambda: seconds + micros / 1e6)


def database(settings: Settings) -> list[Finding]:
    """The database's findings alone: `paas up` refuses to start on a PostgreSQL that does not
    answer (the API would only fail at its start, over and over)."""
    return list(_database(settings))


def _database(settings: Settings) -> Iterator[Finding]:
    if not settings.database_url_override:
        path = settings.home / "paas.db"
        yield passed(AREA, "database", f"SQLite at {path} (this host's clock)")
        return
    from sqlalchemy import create_engine, pool, text
    from sqlalchemy.exc import SQLAlchemyError

    from paas import database

    try:
        url = database.engine_url(settings.database_url)
    except database.DatabaseUrlError:
        return  # the settings check names it
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            if engine.dialect.name == "sqlite":
                connection.execute(text("SELECT 1"))
                yield passed(AREA, "database", "SQLite answers (this host's clock)")
                return
            now = float(connection.execute(text("SELECT extract(epoch from now())")).scalar_one())
            version = int(connection.execute(text("SHOW server_version_num")).scalar_one())
    except SQLAlchemyError as error:
        yield problem(AREA, "database", f"cannot reach the database at "
                      f"{database.shown(settings.database_url)}: {error.__class__.__name__}:"
                      f" {str(error).splitlines()[0]}", "start it, or fix PAAS_DATABASE_URL")
        return
    finally:
        engine.dispose()
    yield _postgres_version(version)
    yield _skew("database clock", lambda: now)


def _postgres_version(version_num: int) -> Finding:
    major = version_num // 10000
    if major < 15:
        return problem(AREA, "database", f"PostgreSQL {major} answers; paas runs on 15 or newer "
                       "(its migrations and suite run on 15)", "upgrade the server to 15",
                       fatal=False)
    return passed(AREA, "database", f"PostgreSQL {major} answers")


def _skew(check: str, their_time: Callable[[], float]) -> Finding:
    skew = their_time() - time.time()
    if abs(skew) > MAX_SKEW:
        return problem(AREA, check, f"{skew:+.1f} s from this host's clock: tokens, leases and "
                       "node heartbeats go wrong", "run a time service (chrony, "
                       "systemd-timesyncd) on both hosts")
    return passed(AREA, check, f"{skew:+.2f} s from this host's clock")
