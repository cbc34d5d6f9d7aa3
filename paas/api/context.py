"""What every request handler needs: the database, Redis, the repos, the build queue."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

import redis
import redis.asyncio as aredis
from sqlalchemy.orm import Session, sessionmaker

from paas import build_queue, database, logs, redis_clients, streams
from paas.logs import BufferedEvents, RedisEvents
from paas.models import make_sessionmaker
from paas.repos import Repos
from paas.settings import Settings

T = TypeVar("T")


@dataclass
class Context:
    settings: Settings
    sessions: sessionmaker
    redis: redis.Redis
    aredis: aredis.Redis
    events: RedisEvents
    repos: Repos
    # The API is the only writer of the database; one writer at a time keeps every
    # read-modify-write (release versions, promotion, ref moves) serial: this lock within
    # the process, and on PostgreSQL the writer lock across API processes (paas/database.py).
    write_lock: threading.Lock

    @classmethod
    def create(cls, settings: Settings) -> Context:
        client = redis_clients.client(settings.redis_url, block=logs.MAX_WAIT,
                                      decode_responses=True)
        return cls(
            settings=settings,
            sessions=make_sessionmaker(settings.database_url, migrate_in_child=True),
            redis=client,
            aredis=redis_clients.async_client(settings.redis_url,
                                              block=streams.FOLLOW_BLOCK_MS / 1000,
                                              decode_responses=True),
            events=RedisEvents(client, settings.log_lines),
            repos=Repos(settings.repos_dir),
            write_lock=threading.Lock(),
        )

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self.sessions() as db:
            yield db

    def write(self, work: Callable[[Session, BufferedEvents], T]) -> T:
        """Runs `work` in one transaction; its events go out only after the commit."""
        events = BufferedEvents()
        with self.write_lock, self.sessions() as db:
            database.serialize_writes(db)
            result = work(db, events)
            db.commit()
        events.flush_to(self.events)
        return result

    def enqueue_build(self, build_id: str) -> None:
        build_queue.enqueue_build(self.redis, build_id)
