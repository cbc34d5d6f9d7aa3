"""The git receiver's backend: a push becomes a build, and the pusher follows its stream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool

from paas import apps, auth, builds, keys, streams
from paas.api.context import Context
from paas.errors import Unauthorized
from paas.git import PushRejected, RefUpdate
from paas.models import BuildStatus, Release, ReleaseStatus, User
from paas.repos import ZERO


class PushBackend:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def authorize(self, app: str, password: str | None, write: bool) -> str:
        with self.ctx.read() as db:
            user = auth.authenticate(db, password)
            apps.get(db, app, user)
            return user.email

    def user_for_key(self, key: Any) -> int | None:
        with self.ctx.read() as db:
            user = keys.owner(db, key)
            return user.id if user is not None else None

    def authorize_user(self, app: str, user_id: int | None, write: bool) -> str:
        with self.ctx.read() as db:
            user = db.get(User, user_id) if user_id is not None else None
            if user is None:
                raise Unauthorized("this SSH key is not registered: add it with `paas keys:add`")
            apps.get(db, app, user)
            return user.email

    def repo_path(self, app: str) -> Path:
        return self.ctx.repos.path(app)

    async def deploy(self, app: str, update: RefUpdate) -> AsyncIterator[str]:
        if update.new == ZERO:
            raise PushRejected("deleting the deployed branch is not allowed")
        build_id = await run_in_threadpool(self._create_build, app, update)
        yield f"-----> Build {build_id} queued"
        async for item in streams.follow(self.ctx.aredis, streams.build_stream(build_id)):
            if item is None:
                outcome = await run_in_threadpool(self._outcome, build_id)
                if outcome is None:
                    continue
                ok, message = outcome
            elif isinstance(entry := item[1], streams.OutputLine):
                yield entry.text
                continue
            else:
                ok, message = entry.ok, entry.message
            if not ok:
                raise PushRejected(message.splitlines()[0] if message else "deploy failed")
            yield f"-----> {message}"
            if not await self._routes_live():
                yield "       (the router has not picked up the new dynos yet)"
            yield f"       {await run_in_threadpool(self._web_url, app)} deployed to paas"
            return

    async def _routes_live(self, timeout: float = 15) -> bool:
        """Waits until the router serves the routes of the release just promoted."""
        events = self.ctx.events
        wanted = await run_in_threadpool(events.routes_generation)
        deadline = asyncio.get_running_loop().time() + timeout
        while await run_in_threadpool(events.routes_applied) < wanted:
            if asyncio.get_running_loop().time() > deadline:
                return False
            await asyncio.sleep(0.02)  # a GET of one key
        return True

    def _create_build(self, app_name: str, update: RefUpdate) -> str:
        if self.ctx.repos.head(app_name, update.ref) != update.old:
            raise PushRejected("the branch moved since you fetched: fetch first (git pull)")

        def work(db, _events) -> str:  # type: ignore[no-untyped-def]
            app = apps.by_name(db, app_name)
            return builds.create(db, app, update.ref, update.old, update.new,
                                 created_by=update.pusher).id

        build_id = self.ctx.write(work)
        self.ctx.enqueue_build(build_id)
        return build_id

    def _outcome(self, build_id: str) -> tuple[bool, str] | None:
        """The database's word, for when the stream's end marker was lost."""
        with self.ctx.read() as db:
            build = builds.get(db, build_id)
            if build.status == BuildStatus.FAILED:
                return False, build.error or "build failed"
            release = db.query(Release).filter_by(build_id=build_id).one_or_none()
            if release is None or release.status == ReleaseStatus.PENDING:
                return None
            if release.status == ReleaseStatus.FAILED:
                return False, release.error
            return True, f"Released v{release.version}"

    def _web_url(self, app_name: str) -> str:
        settings = self.ctx.settings
        with self.ctx.read() as db:
            app = apps.by_name(db, app_name)
            return apps.web_url(app, settings.domain, settings.router_port)

