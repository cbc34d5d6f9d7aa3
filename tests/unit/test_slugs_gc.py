"""What layer garbage collection keeps: releases a user can roll back to, running builds' blobs;
and a rollback beyond that window is refused. A real SQLite database and a real layer store."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from paas import releases
from paas.errors import Conflict
from paas.models import App, Build, BuildStatus, Release, ReleaseStatus
from paas.settings import Settings
from paas.slugs import gc
from paas.slugs.layers import LayerStore
from tests import postgres

OLD = 1_000_000_000


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Session]:
    with postgres.session_in(tmp_path) as session:
        yield session


@pytest.fixture
def store(tmp_path: Path) -> LayerStore:
    return LayerStore(Settings(home=tmp_path / "home"))


def slug_with_layer(store: LayerStore, tmp_path: Path, text: str) -> dict:
    src = tmp_path / "src" / text
    src.mkdir(parents=True)
    (src / "app.py").write_text(f"print({text!r})\n")
    stored = store.put_dir(src)
    manifest = store.write_image([stored], {}, {}, f"app:{text}")
    for digest in (stored.digest, manifest):
        os.utime(store.blobs.path(digest), (OLD, OLD))
    return {"layers": [{"name": "app", "digest": stored.digest}], "manifest": manifest,
            "process_types": {"web": "python app.py"}}


def release(db: Session, app: App, version: int, slug: dict,
            status: ReleaseStatus = ReleaseStatus.SUCCEEDED) -> Release:
    found = Release(app_id=app.id, version=version, slug=slug, status=status,
                    commit=f"{version:07d}" + "0" * 33)
    db.add(found)
    db.flush()
    return found


@pytest.fixture
def app(db: Session) -> App:
    found = App(name="shop", slot=1)
    db.add(found)
    db.flush()
    return found


def test_gc_keeps_the_last_five_releases_current_pending_and_the_default_rollback_target(
        db: Session, store: LayerStore, app: App, tmp_path: Path) -> None:
    slugs = {v: slug_with_layer(store, tmp_path, f"v{v}") for v in range(1, 10)}
    made = {v: release(db, app, v, slugs[v]) for v in range(1, 9)}
    made[9] = release(db, app, 9, slugs[9], ReleaseStatus.PENDING)
    # v3 is live; v2 is where `paas rollback` would go back to; v4..v9 failed or came after.
    app.current_release_id = made[3].id
    app.pending_release_id = made[9].id

    result = gc.collect(db, store)

    kept = {v for v, slug in slugs.items() if store.has(slug["layers"][0]["digest"])}
    assert kept == {2, 3, 5, 6, 7, 8, 9}
    assert not store.has(slugs[1]["manifest"])
    gone = {d for v in (1, 4) for d in gc.slug_digests(slugs[v])}
    assert gone < set(result.removed)
    assert len(result.removed) == 6  # v1's and v4's layer, manifest and image config
    assert gc.missing_layers(store, slugs[1]) == [slugs[1]["layers"][0]["digest"]]
    assert gc.missing_layers(store, slugs[2]) == []


def test_blobs_a_running_build_may_use_stay(db: Session, store: LayerStore, app: App,
                                            tmp_path: Path) -> None:
    orphan = slug_with_layer(store, tmp_path, "orphan")
    digest = orphan["layers"][0]["digest"]
    db.add(Build(id="b1", app_id=app.id, ref="refs/heads/main", old_commit="0" * 40,
                 commit="1" * 40, status=BuildStatus.BUILDING, created_at=time.time() - 60))
    db.flush()
    os.utime(store.blobs.path(digest))  # the running build reused it just now

    assert digest not in gc.collect(db, store).removed
    assert store.has(digest)

    db.get(Build, "b1").status = BuildStatus.SUCCEEDED  # type: ignore[union-attr]
    db.flush()
    assert digest in gc.collect(db, store).removed


def test_rollback_to_a_collected_release_is_refused_with_what_to_do(
        db: Session, store: LayerStore, app: App, tmp_path: Path) -> None:
    old = release(db, app, 1, slug_with_layer(store, tmp_path, "old"))
    recent = [release(db, app, v, slug_with_layer(store, tmp_path, f"v{v}")) for v in range(2, 8)]
    app.current_release_id = recent[-1].id
    gc.collect(db, store)

    with pytest.raises(Conflict) as refused:
        releases.rollback(db, app, 1, "ada@example.com", store)
    assert refused.value.message.startswith("v1's slug is gone: its layers were garbage-collected")
    assert f"push commit {old.commit[:7]} again" in refused.value.message
    assert releases.rollback(db, app, 3, "ada@example.com", store).description == "Rollback to v3"
