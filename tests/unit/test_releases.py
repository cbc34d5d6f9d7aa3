"""Releases as a user sees them: a push's release goes live once its web dynos answer, a
crashed web dyno fails it and leaves the previous release serving, a newer release supersedes
a pending one, and rollback refuses what never went live. Over SQLite with the real internal
routes (the worker's build result, the agent's reports) and the app API."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from paas import builds, releases
from paas.api import apps, internal
from paas.models import App
from tests.unit.internal_api import Api, api, deployed, slug

OLD, NEW = "1" * 40, "2" * 40


@dataclass
class RecordingRepos:
    """The ref moves a promotion asks for (paas.repos.Repos.move_ref)."""

    moved: list[tuple[str, str, str, str]] = field(default_factory=list)

    def move_ref(self, app: str, ref: str, old: str, new: str) -> None:
        self.moved.append((app, ref, old, new))


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[Api]:
    for made in api(tmp_path, internal.routes, apps.routes):
        made.ctx.repos = RecordingRepos()  # type: ignore[assignment]
        yield made


def push(platform: Api, app: str = "shop", commit: str = NEW, old: str = OLD) -> str:
    """A pushed commit whose build the worker finished: the build's id."""
    with platform.db() as db:
        found = db.query(App).filter_by(name=app).one()
        build = builds.create(db, found, "refs/heads/main", old, commit, created_by="ann")
        db.commit()
        build_id = build.id
    started = platform.http.post(f"/v1/internal/builds/{build_id}/start",
                                 headers=platform.service)
    assert started.status_code == 200, started.text
    finished = platform.http.post(f"/v1/internal/builds/{build_id}/result",
                                  json={"status": "succeeded", "slug": slug("web")},
                                  headers=platform.service)
    assert finished.status_code == 200, finished.text
    return build_id


def report_web(platform: Api, release: int, state: str, **extra: Any) -> None:
    registered = platform.http.put("/v1/internal/nodes/node-a", json={"memory_mb": 4096},
                                   headers=platform.service)
    assert registered.status_code == 200, registered.text
    dyno = {"id": f"d{release}", "app": "shop", "release": release, "type": "web", "index": 1,
            "state": state, "ip": "10.0.0.5", "port": 5000, **extra}
    answer = platform.http.put("/v1/internal/nodes/node-a/dynos", json={"dynos": [dyno]},
                               headers=platform.service)
    assert answer.status_code == 200, answer.text


def listed(platform: Api, app: str = "shop") -> list[dict[str, Any]]:
    answer = platform.http.get(f"/v1/apps/{app}/releases", headers=platform.admin)
    assert answer.status_code == 200, answer.text
    return answer.json()


def status(platform: Api) -> dict[int, tuple[str, bool]]:
    return {r["version"]: (r["status"], r["current"]) for r in listed(platform)}


@pytest.fixture
def shop(platform: Api) -> None:
    with platform.db() as db:
        deployed(db, "shop", 1, "web", web=1)


def test_a_pushed_release_waits_for_its_web_dyno_then_goes_live_and_moves_the_ref(
        platform: Api, shop: None) -> None:
    build_id = push(platform)
    assert status(platform) == {1: ("succeeded", True), 2: ("pending", False)}
    assert (build_id, "-----> Releasing v2") in platform.events.lines

    report_web(platform, 2, "starting")
    assert status(platform)[2] == ("pending", False)

    report_web(platform, 2, "up")
    assert status(platform) == {1: ("succeeded", False), 2: ("succeeded", True)}
    assert platform.ctx.repos.moved == [("shop", "refs/heads/main", OLD, NEW)]
    assert (build_id, "Released v2") in platform.events.lines
    assert platform.events.route_changes >= 1


def test_a_crashed_web_dyno_fails_the_release_and_the_previous_one_stays_current(
        platform: Api, shop: None) -> None:
    build_id = push(platform)
    report_web(platform, 2, "crashed", exit_code=3, output_tail="Traceback\nKeyError: 'DB'")

    versions = {r["version"]: r for r in listed(platform)}
    assert (versions[2]["status"], versions[2]["current"]) == ("failed", False)
    assert "web.1 of v2 crashed before it answered on $PORT (exit code 3)" in \
        versions[2]["error"]
    assert "KeyError: 'DB'" in versions[2]["error"]
    assert (versions[1]["status"], versions[1]["current"]) == ("succeeded", True)
    assert platform.ctx.repos.moved == []  # the branch still names the old commit
    assert any(b == build_id and "release v2 failed" in line
               for b, line in platform.events.lines)


def test_a_newer_release_supersedes_a_pending_one(platform: Api, shop: None) -> None:
    push(platform, commit=NEW)
    push(platform, commit="3" * 40, old=NEW)

    versions = {r["version"]: r for r in listed(platform)}
    assert versions[2]["status"] == "failed"
    assert versions[2]["error"] == "superseded by v3"
    assert versions[3]["status"] == "pending"
    # The superseded release's dyno coming up later promotes nothing.
    report_web(platform, 2, "up")
    assert status(platform) == {1: ("succeeded", True), 2: ("failed", False),
                                3: ("pending", False)}


def test_a_permanent_start_error_fails_the_release_as_the_platforms_fault(
        platform: Api, shop: None) -> None:
    push(platform)
    platform.http.put("/v1/internal/nodes/node-a", json={"memory_mb": 4096},
                      headers=platform.service)
    failed = {"app": "shop", "release": 2, "type": "web", "index": 1,
              "error": "a layer would not unpack", "permanent": True}
    answer = platform.http.put("/v1/internal/nodes/node-a/dynos",
                               json={"dynos": [], "failed_starts": [failed]},
                               headers=platform.service)
    assert answer.status_code == 200, answer.text

    error = {r["version"]: r for r in listed(platform)}[2]["error"]
    assert error.startswith("platform error: web.1 of v2 could not start: a layer would not")
    assert "the app keeps v1" in error
    assert status(platform)[1] == ("succeeded", True)


def test_rollback_makes_a_new_release_of_an_old_slug_and_refuses_a_failed_one(
        platform: Api, shop: None) -> None:
    push(platform)
    report_web(platform, 2, "crashed", exit_code=1)

    refused = platform.http.post("/v1/apps/shop/releases", json={"rollback": 2},
                                 headers=platform.admin)
    assert refused.status_code == 409
    assert "v2 never went live" in refused.json()["message"]
    same = platform.http.post("/v1/apps/shop/releases", json={"rollback": 1},
                              headers=platform.admin)
    assert same.status_code == 409
    assert "v1 is the current release already" in same.json()["message"]
    missing = platform.http.post("/v1/apps/shop/releases", json={"rollback": 9},
                                 headers=platform.admin)
    assert missing.status_code == 404


def test_rollback_without_a_version_goes_to_the_last_good_release_before_the_current(
        platform: Api, shop: None) -> None:
    push(platform)
    report_web(platform, 2, "up")
    with platform.db() as db:
        app = db.query(App).filter_by(name="shop").one()
        made = releases.rollback(db, app, None, "ann")
        db.commit()
    newest = listed(platform)[0]
    assert made.version == 3
    assert (newest["version"], newest["status"], newest["description"]) == (
        3, "pending", "Rollback to v1")
    assert status(platform)[2] == ("succeeded", True)  # current until v3's dyno is up


def test_rollback_to_a_slug_whose_layers_are_gone_is_refused_with_what_to_do(
        platform: Api, shop: None) -> None:
    push(platform)
    report_web(platform, 2, "up")
    answer = platform.http.post("/v1/apps/shop/releases", json={"rollback": 1},
                                headers=platform.admin)
    assert answer.status_code == 409
    assert "v1's slug is gone" in answer.json()["message"]
    assert "push commit c0ffee again" in answer.json()["message"]
    assert [r["version"] for r in listed(platform)] == [2, 1]


def test_an_app_without_a_release_has_nothing_to_roll_back(platform: Api) -> None:
    with platform.db() as db:
        db.add(App(name="empty", slot=2))
        db.commit()
        app = db.query(App).filter_by(name="empty").one()
        assert releases.current(db, app) is None
    answer = platform.http.post("/v1/apps/empty/releases", json={"rollback": 1},
                                headers=platform.admin)
    assert answer.status_code == 409
    assert "has no release to roll back from: push code first" in answer.json()["message"]
