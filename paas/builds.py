"""Builds: one run of the buildpacks on one pushed commit."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from paas import releases
from paas.errors import Conflict, NotFound
from paas.events import Events
from paas.models import BUILD_TRANSITIONS, App, Build, BuildStatus, now
from paas.redact import redact
from paas.wire import Slug


def create(db: Session, app: App, ref: str, old_commit: str, commit: str,
           created_by: str = "") -> Build:
    build = Build(id=str(uuid.uuid4()), app_id=app.id, ref=ref, old_commit=old_commit,
                  commit=commit, created_by=created_by)
    db.add(build)
    db.flush()
    return build


def get(db: Session, build_id: str) -> Build:
    build = db.get(Build, build_id)
    if build is None:
        raise NotFound(f"no build {build_id}")
    return build


def for_app(db: Session, app: App) -> list[Build]:
    query = select(Build).where(Build.app_id == app.id).order_by(Build.created_at.desc())
    return list(db.scalars(query))


def _move(build: Build, to: BuildStatus) -> None:
    if to not in BUILD_TRANSITIONS[BuildStatus(build.status)]:
        raise Conflict(f"build {build.id} is {build.status}, it cannot become {to}")
    build.status = to


def start(db: Session, build: Build) -> None:
    """Idempotent: a redelivered task may start the same build again."""
    if build.status == BuildStatus.BUILDING:
        return
    _move(build, BuildStatus.BUILDING)
    build.started_at = now()


def succeed(db: Session, build: Build, slug: dict[str, Any], events: Events) -> None:
    _move(build, BuildStatus.SUCCEEDED)
    build.slug = slug
    build.finished_at = now()
    releases.create_from_build(db, build, events)


def fail(db: Session, build: Build, error: str, events: Events) -> None:
    if build.status == BuildStatus.FAILED:
        return
    _move(build, BuildStatus.FAILED)
    build.error = redact(error)
    build.finished_at = now()
    events.deploy_end(build.id, False, error)


def waiting_since_before(db: Session, moment: float) -> list[str]:
    """Ids of the builds still pending (no worker took them) that were created before
    `moment`."""
    query = select(Build.id).where(Build.status == BuildStatus.PENDING,
                                   Build.created_at < moment)
    return list(db.scalars(query))


def previous_layer_digests(db: Session, app: App) -> list[str]:
    query = (select(Build).where(Build.app_id == app.id, Build.status == BuildStatus.SUCCEEDED)
             .order_by(Build.finished_at.desc()).limit(1))
    last = db.scalar(query)
    return list(Slug.of(last.slug).digests) if last else []


def to_dict(build: Build) -> dict[str, Any]:
    duration = (build.finished_at - build.started_at
                if build.finished_at and build.started_at else None)
    slug = Slug.of(build.slug)
    return {
        "id": build.id,
        "status": build.status,
        "commit": build.commit,
        "ref": build.ref,
        "error": redact(build.error) if build.error else build.error,
        "created_by": build.created_by,
        "created_at": build.created_at,
        "duration": duration,
        "layers": [layer.to_json() for layer in slug.layers],
        "process_types": slug.process_types,
        "buildpacks": list(slug.buildpacks),
        "manifest": slug.manifest,
    }
