"""The formation as `paas ps:scale`, `ps:resize` and `ps:restart` change it, through the app
API over SQLite: quantities within bounds and of declared process types only, sizes by name,
restart marks per type or per dyno, and app.json's formation defaults for new types."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from paas import formation, releases
from paas.api import apps, dynos, internal
from paas.models import App
from tests.unit.internal_api import Api, api, deployed, slug


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[Api]:
    yield from api(tmp_path, internal.routes, apps.routes, dynos.routes)


@pytest.fixture
def shop(platform: Api) -> None:
    with platform.db() as db:
        deployed(db, "shop", 1, "web", "worker", "release")


def patch(platform: Api, body: Any, app: str = "shop") -> tuple[int, Any]:
    answer = platform.http.patch(f"/v1/apps/{app}/formation", json=body,
                                 headers=platform.admin)
    return answer.status_code, answer.json()


def shown(platform: Api) -> dict[str, tuple[int, str]]:
    answer = platform.http.get("/v1/apps/shop/formation", headers=platform.admin)
    assert answer.status_code == 200, answer.text
    return {row["type"]: (row["quantity"], row["size"]) for row in answer.json()}


def test_a_new_app_runs_one_web_dyno_and_no_other_and_never_a_release_process(
        platform: Api, shop: None) -> None:
    assert shown(platform) == {"web": (1, "basic"), "worker": (0, "basic")}


def test_scaling_sets_each_quantity_and_keeps_the_others(platform: Api, shop: None) -> None:
    code, body = patch(platform, {"worker": 3})
    assert code == 200, body
    assert shown(platform) == {"web": (1, "basic"), "worker": (3, "basic")}
    code, body = patch(platform, {"web": {"quantity": 0, "size": "standard"}})
    assert code == 200, body
    assert shown(platform) == {"web": (0, "standard"), "worker": (3, "basic")}


@pytest.mark.parametrize("count", [-1, formation.MAX_QUANTITY + 1])
def test_scaling_beyond_the_limit_is_refused_and_changes_nothing(
        platform: Api, shop: None, count: int) -> None:
    code, body = patch(platform, {"worker": 2, "web": count})
    assert code == 422
    assert body["message"] == (f"web={count}: the quantity must be 0 to "
                               f"{formation.MAX_QUANTITY}")
    assert shown(platform) == {"web": (1, "basic"), "worker": (0, "basic")}


def test_the_limit_itself_is_allowed(platform: Api, shop: None) -> None:
    code, _ = patch(platform, {"worker": formation.MAX_QUANTITY})
    assert code == 200
    assert shown(platform)["worker"] == (formation.MAX_QUANTITY, "basic")


@pytest.mark.parametrize("body", [{"clock": 1}, {"release": 1}])
def test_only_the_procfiles_process_types_scale(platform: Api, shop: None,
                                                body: dict[str, int]) -> None:
    code, answer = patch(platform, body)
    assert code == 422
    assert "its Procfile declares: web, worker" in answer["message"]
    assert set(shown(platform)) == {"web", "worker"}


@pytest.mark.parametrize("body", [{"web": "2"}, {"web": True}, {}, ["web"]])
def test_a_quantity_that_is_not_a_number_is_refused(platform: Api, shop: None,
                                                    body: Any) -> None:
    code, answer = patch(platform, body)
    assert code == 422
    assert "send" in answer["message"]
    assert shown(platform)["web"] == (1, "basic")


def test_an_app_without_a_release_cannot_scale_yet(platform: Api) -> None:
    with platform.db() as db:
        db.add(App(name="empty", slot=2))
        db.commit()
    code, answer = patch(platform, {"web": 1}, app="empty")
    assert code == 422
    assert answer["message"] == "empty has no release yet: push code first (git push paas main)"


def test_an_unknown_size_is_refused_naming_the_sizes(platform: Api, shop: None) -> None:
    code, answer = patch(platform, {"web": {"size": "huge"}})
    assert code == 422
    assert answer["message"].startswith("no dyno size 'huge'; the sizes are: eco (256 MB)")
    code, _ = patch(platform, {"web": {"size": "Performance"}})
    assert code == 200
    assert shown(platform)["web"] == (1, "performance")


def marks(platform: Api) -> dict[str, tuple[float, float]]:
    """Each type's restart marks of dynos 1 and 2."""
    with platform.db() as db:
        app = db.query(App).filter_by(name="shop").one()
        return {row.type: (formation.restart_mark(row, 1), formation.restart_mark(row, 2))
                for row in formation.for_app(db, app)}


def restart(platform: Api, target: str | None) -> tuple[int, Any]:
    answer = platform.http.post("/v1/apps/shop/dynos/restart", json={"target": target},
                                headers=platform.admin)
    return answer.status_code, answer.json()


def test_restarting_one_dyno_marks_only_that_dyno(platform: Api, shop: None) -> None:
    before = time.time()
    code, answer = restart(platform, "web.2")
    assert (code, answer) == (200, {"restarting": "web.2"})
    found = marks(platform)
    assert found["web"][0] == 0.0 and found["web"][1] >= before
    assert found["worker"] == (0.0, 0.0)


def test_restarting_a_type_or_all_marks_every_dyno_of_them(platform: Api, shop: None) -> None:
    before = time.time()
    assert restart(platform, "worker")[0] == 200
    assert marks(platform)["web"] == (0.0, 0.0)
    assert min(marks(platform)["worker"]) >= before
    assert restart(platform, None) == (200, {"restarting": "all"})
    assert all(min(pair) >= before for pair in marks(platform).values())


@pytest.mark.parametrize("target", ["clock", "web.x"])
def test_restarting_what_the_app_does_not_have_is_refused(platform: Api, shop: None,
                                                          target: str) -> None:
    code, _ = restart(platform, target)
    assert code == 422
    assert marks(platform) == {"web": (0.0, 0.0), "worker": (0.0, 0.0)}


def test_app_json_formation_gives_a_new_type_its_quantity_and_size(platform: Api,
                                                                   shop: None) -> None:
    made = {**slug("web", "worker", "clock"),
            "app_json": {"formation": {"clock": {"quantity": 2, "size": "eco"},
                                       "web": {"quantity": 5}}}}
    with platform.db() as db:
        app = db.query(App).filter_by(name="shop").one()
        releases.create(db, app, slug=made, description="Deploy", commit="beef")
        db.commit()
    # A new type takes app.json's entry; a type the app had keeps its quantity.
    assert shown(platform) == {"clock": (2, "eco"), "web": (1, "basic"),
                               "worker": (0, "basic")}
