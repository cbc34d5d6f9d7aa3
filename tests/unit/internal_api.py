"""The API's routes over SQLite, in process, for unit tests: a Starlette `TestClient` with the
real handlers and transactions, Redis replaced by a small in-memory stand-in, and the tokens
of the admin, the service identity and a plain user."""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session
from starlette.applications import Starlette

from paas import auth, formation, releases, users
from paas.api import internal
from paas.api.context import Context
from paas.models import App, Release, ReleaseStatus, make_sessionmaker
from paas.settings import Settings
from tests import postgres

with warnings.catch_warnings():  # Starlette 1.10 would rather have httpx2; httpx works
    warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient


class MemoryRedis:
    """What the internal routes ask of Redis (usage figures, the route generation)."""

    def __init__(self) -> None:
        self.hashes: dict[str, dict[str, str]] = {}
        self.values: dict[str, str] = {}

    def pipeline(self, transaction: bool = False) -> MemoryPipeline:
        return MemoryPipeline(self)

    def get(self, key: str) -> str | None:
        return self.values.get(key)

    def hgetall(self, key: str) -> dict[str, str]:
        return dict(self.hashes.get(key, {}))


@dataclass
class MemoryPipeline:
    client: MemoryRedis
    results: list[Any] = field(default_factory=list)

    def hmget(self, key: str, fields: list[str]) -> None:
        self.results.append([self.client.hashes.get(key, {}).get(f) for f in fields])

    def hset(self, key: str, mapping: dict[str, str]) -> None:
        self.client.hashes.setdefault(key, {}).update(mapping)
        self.results.append(len(mapping))

    def expire(self, key: str, seconds: int) -> None:
        self.results.append(True)

    def execute(self) -> list[Any]:
        done, self.results = self.results, []
        return done


@dataclass
class RecordingEvents:
    """paas.events.Events that remembers what was said."""

    route_changes: int = 0
    desired_changes: int = 0
    lines: list[tuple[str, str]] = field(default_factory=list)

    def deploy_line(self, build_id: str, line: str) -> None:
        self.lines.append((build_id, line))

    def deploy_end(self, build_id: str, ok: bool, message: str) -> None:
        self.lines.append((build_id, message))

    def routes_changed(self) -> None:
        self.route_changes += 1

    def routes_generation(self) -> int:
        return self.route_changes

    def desired_changed(self) -> None:
        self.desired_changes += 1

    def app_log(self, app: str, source: str, line: str) -> None:
        self.lines.append((app, line))


@dataclass
class Api:
    ctx: Context
    events: RecordingEvents
    http: TestClient
    service: dict[str, str]  # headers with the service token
    admin: dict[str, str]
    user: dict[str, str]  # a user who is not an admin

    def db(self) -> Session:
        return self.ctx.sessions()


def api(tmp_path: Path, *route_makers: Any, **settings: Any) -> Iterator[Api]:
    """The routes of `route_makers` (each `routes(ctx)`; the internal ones by default)."""
    settings.setdefault("database_url_override", postgres.database_url_for(tmp_path))
    config = Settings(home=tmp_path, **settings)
    events = RecordingEvents()
    ctx = Context(settings=config, sessions=make_sessionmaker(config.database_url),
                  redis=MemoryRedis(), aredis=None, events=events,  # type: ignore[arg-type]
                  repos=None, write_lock=threading.Lock())  # type: ignore[arg-type]
    with ctx.sessions() as db:
        auth.bootstrap(db, config.admin_token_path, config.service_token_path)
        user = users.create(db, "ann@example.com", "correct horse battery")
        _, user_token = auth.create_token(db, user, "tests")
        db.commit()
    routes = [route for make in route_makers or (internal.routes,) for route in make(ctx)]
    app = Starlette(routes=routes)
    app.state.ctx = ctx
    try:
        with TestClient(app) as http:
            yield Api(ctx, events, http, _bearer(config.service_token_path.read_text()),
                      _bearer(config.admin_token_path.read_text()), _bearer(user_token))
    finally:
        ctx.sessions.kw["bind"].dispose()


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token.strip()}"}


def slug(*types: str, memory: str = "") -> dict[str, Any]:
    return {"layers": [{"digest": "sha256:" + "a" * 64, "name": "app"}],
            "process_types": {t: f"run-{t}" for t in types}, "env": {"FROM_SLUG": "1"},
            "app_json": {}}


def deployed(db: Session, name: str, slot: int, *types: str, **quantities: int) -> App:
    """An app with a current release of `types` and the formation `quantities`."""
    app = App(name=name, slot=slot)
    db.add(app)
    db.flush()
    release = releases.create(db, app, slug=slug(*types), description="Deploy", commit="c0ffee")
    make_current(app, release)
    if quantities:
        formation.scale(db, app, list(types), quantities)
    db.commit()
    return app


def make_current(app: App, release: Release) -> None:
    release.status = ReleaseStatus.SUCCEEDED
    app.current_release_id, app.pending_release_id = release.id, None
