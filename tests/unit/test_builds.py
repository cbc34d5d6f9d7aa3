"""Builds as the worker drives them and the user lists them, through the internal and app
routes over SQLite: pending → building → succeeded (a release) or failed (no release, the app
keeps serving), a redelivered start is harmless, an outcome is decided once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from paas import builds
from paas.api import apps, internal
from paas.models import App
from tests.unit.internal_api import Api, api, deployed, slug


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[Api]:
    yield from api(tmp_path, internal.routes, apps.routes)


@pytest.fixture
def build_id(platform: Api) -> str:
    with platform.db() as db:
        app = deployed(db, "shop", 1, "web", web=1)
        build = builds.create(db, app, "refs/heads/main", "1" * 40, "2" * 40, created_by="ann")
        db.commit()
        return build.id


def post(platform: Api, build_id: str, what: str, body: Any = None) -> tuple[int, Any]:
    answer = platform.http.post(f"/v1/internal/builds/{build_id}/{what}", json=body,
                                headers=platform.service)
    return answer.status_code, answer.json()


def listed(platform: Api, what: str) -> list[dict[str, Any]]:
    answer = platform.http.get(f"/v1/apps/shop/{what}", headers=platform.admin)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_a_build_is_pending_until_a_worker_takes_it_and_a_redelivery_starts_it_once(
        platform: Api, build_id: str) -> None:
    assert [b["status"] for b in listed(platform, "builds")] == ["pending"]
    assert post(platform, build_id, "start")[1]["status"] == "building"
    code, again = post(platform, build_id, "start")
    assert (code, again["status"]) == (200, "building")
    assert listed(platform, "builds")[0]["commit"] == "2" * 40


def test_a_succeeded_build_makes_a_pending_release_of_its_slug(platform: Api,
                                                              build_id: str) -> None:
    post(platform, build_id, "start")
    code, done = post(platform, build_id, "result",
                      {"status": "succeeded", "slug": slug("web", "worker")})
    assert code == 200, done
    assert done["status"] == "succeeded" and done["duration"] is not None
    assert done["process_types"] == {"web": "run-web", "worker": "run-worker"}
    newest = listed(platform, "releases")[0]
    assert (newest["version"], newest["status"], newest["description"]) == (
        2, "pending", "Deploy 2222222")


def test_a_failed_build_makes_no_release_and_the_app_keeps_its_current_one(
        platform: Api, build_id: str) -> None:
    post(platform, build_id, "start")
    error = "pip install failed; see https://ann:hunter2@example.com/simple"
    code, done = post(platform, build_id, "result", {"status": "failed", "error": error})
    assert code == 200, done
    assert done["status"] == "failed"
    assert "hunter2" not in done["error"] and "pip install failed" in done["error"]
    assert [(r["version"], r["current"]) for r in listed(platform, "releases")] == [(1, True)]
    assert (build_id, error) in platform.events.lines  # the pusher is told


def test_an_outcome_is_decided_once(platform: Api, build_id: str) -> None:
    post(platform, build_id, "start")
    assert post(platform, build_id, "result", {"status": "failed", "error": "x"})[0] == 200
    code, answer = post(platform, build_id, "result",
                        {"status": "succeeded", "slug": slug("web")})
    assert code == 409
    assert "cannot become succeeded" in answer["message"]
    assert [r["version"] for r in listed(platform, "releases")] == [1]


def test_a_build_that_never_started_cannot_succeed(platform: Api, build_id: str) -> None:
    code, answer = post(platform, build_id, "result", {"status": "succeeded",
                                                       "slug": slug("web")})
    assert code == 409
    assert "is pending, it cannot become succeeded" in answer["message"]


@pytest.mark.parametrize("body", [{"status": "succeeded"}, {"status": "done"}])
def test_a_result_that_is_not_a_build_result_is_a_400(platform: Api, build_id: str,
                                                      body: dict[str, str]) -> None:
    post(platform, build_id, "start")
    code, answer = post(platform, build_id, "result", body)
    assert code == 400
    assert 'send {"status": "succeeded", "slug": {...}}' in answer["message"]
    assert listed(platform, "builds")[0]["status"] == "building"


def test_an_unknown_build_is_a_404_and_users_cannot_report_builds(
        platform: Api, build_id: str) -> None:
    assert post(platform, "no-such-build", "start")[0] == 404
    answer = platform.http.post(f"/v1/internal/builds/{build_id}/start", headers=platform.user)
    assert answer.status_code == 403
    assert listed(platform, "builds")[0]["status"] == "pending"


def test_builds_are_listed_newest_first(platform: Api, build_id: str) -> None:
    with platform.db() as db:
        app = db.query(App).filter_by(name="shop").one()
        builds.create(db, app, "refs/heads/main", "2" * 40, "3" * 40)
        db.commit()
    assert [b["commit"][0] for b in listed(platform, "builds")] == ["3", "2"]
