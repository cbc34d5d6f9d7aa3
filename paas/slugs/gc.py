"""Garbage collection of the layer store: what the releases still name stays, the rest goes.

Kept, for each app: its last KEEP_RELEASES releases, its current and pending release, and the
release `paas rollback` (without a version) would go back to. So a rollback within that window
always finds its layers; one beyond it is refused by `require_layers` with a clear message.
Blobs a build still running may use (written or touched since it was created) stay too.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from paas.errors import Conflict
from paas.models import App, Build, BuildStatus, Release, ReleaseStatus
from paas.platform_jobs import PlatformJob
from paas.slugs.layers import GcResult, LayerStore
from paas.wire import Slug

if TYPE_CHECKING:
    from paas.api.context import Context
    from paas.settings import Settings

KEEP_RELEASES = 5
# Extra safety for `paas slugs:gc --min-age`: blobs younger than this stay.
DEFAULT_MIN_AGE = 0.0
# A build unfinished for longer than this (a worker that died) no longer protects new blobs.
STALE_BUILD_AGE = 6 * 3600.0


def kept_releases(db: Session, app: App, keep_releases: int = KEEP_RELEASES) -> list[Release]:
    """The releases of app whose layers garbage collection keeps."""
    query = (select(Release).where(Release.app_id == app.id)
             .order_by(Release.version.desc()).limit(keep_releases))
    kept = list(db.scalars(query))
    for release_id in (app.current_release_id, app.pending_release_id):
        release = db.get(Release, release_id) if release_id is not None else None
        if release is not None:
            kept.append(release)
    if app.current_release_id is not None:
        kept += _default_rollback_target(db, app)
    return kept


def _default_rollback_target(db: Session, app: App) -> list[Release]:
    current = db.get(Release, app.current_release_id)
    if current is None:
        return []
    query = (select(Release).where(Release.app_id == app.id, Release.version < current.version,
                                   Release.status == ReleaseStatus.SUCCEEDED)
             .order_by(Release.version.desc()).limit(1))
    return list(db.scalars(query))


def referenced(db: Session, keep_releases: int = KEEP_RELEASES) -> set[str]:
    """Digests named by the kept releases of every app."""
    digests: set[str] = set()
    for app in db.scalars(select(App)):
        for release in kept_releases(db, app, keep_releases):
            digests |= slug_digests(release.slug)
    return digests


def slug_digests(stored: dict[str, Any] | None) -> set[str]:
    """The blobs a stored slug names: its layers and its manifest."""
    slug = Slug.of(stored)
    return set(slug.digests) | ({slug.manifest} if slug.manifest else set())


def missing_layers(store: LayerStore, stored: dict[str, Any] | None) -> list[str]:
    """The layer digests of a stored slug that are no longer in the store (garbage-collected)."""
    return sorted(d for d in Slug.of(stored).digests if not store.has(d))


def require_layers(store: LayerStore, release: Release) -> None:
    """Refuse to release again a slug whose layers were garbage-collected."""
    gone = missing_layers(store, release.slug)
    if gone:
        raise Conflict(
            f"v{release.version}'s slug is gone: its layers were garbage-collected (the "
            f"platform keeps those of the last {KEEP_RELEASES} releases, the current and the "
            f"previous one). Roll back to a more recent release (`paas releases` lists them), "
            f"or push commit {release.commit[:7] or 'of that release'} again to rebuild it."
        )


def _running_since(db: Session) -> float | None:
    """When the oldest build still running was created (None: no build is running)."""
    unfinished = (BuildStatus.PENDING, BuildStatus.BUILDING)
    oldest = db.scalars(select(Build.created_at).where(
        Build.status.in_(unfinished), Build.created_at > time.time() - STALE_BUILD_AGE)
        .order_by(Build.created_at).limit(1)).first()
    return oldest


def collect(db: Session, store: LayerStore, min_age: float = DEFAULT_MIN_AGE) -> GcResult:
    since = _running_since(db)
    if since is not None:
        # A running build's layers are named by no release yet; the store touched every blob
        # it wrote or reused (mtime), so blobs newer than the build's start are its own.
        min_age = max(min_age, time.time() - since + 1)
    return store.gc(referenced(db), min_age)


def to_dict(result: GcResult) -> dict[str, Any]:
    return {"removed": result.removed, "bytes_freed": result.bytes_freed, "kept": result.kept}


# Besides its hourly slot, the `layer-gc` job runs after each build (the worker asks for it:
# `POST /v1/internal/slugs/gc`, which requests a run).
LAYER_GC_EVERY = 3600.0


def summary(result: GcResult) -> str:
    return (f"removed {len(result.removed)} blob(s), {result.bytes_freed} bytes freed; "
            f"{result.kept} kept")


def layer_gc_job(settings: Settings) -> PlatformJob:
    def run(ctx: Context) -> str:
        store = LayerStore(settings)
        # In a write: no release is made while it decides what the releases name.
        return summary(ctx.write(lambda db, _events: collect(db, store)))

    return PlatformJob(name="layer-gc", every_seconds=LAYER_GC_EVERY, run=run,
                       description="removes the layers no kept release names (after each "
                                   "build, and hourly)")
