"""The route table the router serves (`GET /v1/internal/routes`), as visitors of an app's
hostnames meet it: the up web dynos of the current release only, H14 with none, H10 when they
all crashed, H80 in maintenance, custom domains beside `<app>.<PAAS_DOMAIN>`. Over SQLite with
the real internal and app routes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from paas import releases
from paas.api import apps, domains, internal
from paas.models import App
from paas.wire import RouteTable
from tests.unit.internal_api import Api, api, deployed, slug

DOMAIN = "apps.example.com"


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[Api]:
    yield from api(tmp_path, internal.routes, apps.routes, domains.routes, domain=DOMAIN)


@pytest.fixture
def shop(platform: Api) -> None:
    with platform.db() as db:
        deployed(db, "shop", 1, "web", "worker", web=2, worker=1)
    answer = platform.http.put("/v1/internal/nodes/node-a", json={"memory_mb": 8192},
                               headers=platform.service)
    assert answer.status_code == 200, answer.text


def report(platform: Api, *dynos: tuple[str, int, str, str]) -> None:
    """(name, release, state, ip) of each dyno node-a runs."""
    rows = []
    for name, release, state, ip in dynos:
        process_type, _, index = name.partition(".")
        rows.append({"id": f"{name}-v{release}-{ip}", "app": "shop", "release": release,
                     "type": process_type, "index": int(index), "state": state, "ip": ip,
                     "port": 5000})
    answer = platform.http.put("/v1/internal/nodes/node-a/dynos", json={"dynos": rows},
                               headers=platform.service)
    assert answer.status_code == 200, answer.text


def table(platform: Api) -> RouteTable:
    answer = platform.http.get("/v1/internal/routes", headers=platform.service)
    assert answer.status_code == 200, answer.text
    return RouteTable.from_json(answer.json())


def route(platform: Api, hostname: str = f"shop.{DOMAIN}") -> tuple[str, list[str]]:
    found = table(platform).routes[hostname]
    return found.mode, [f"{p.dyno}={p.addr}" for p in found.peers]


def test_an_app_with_up_web_dynos_routes_to_them_and_to_no_other_process(
        platform: Api, shop: None) -> None:
    report(platform, ("web.1", 1, "up", "10.0.0.2"), ("web.2", 1, "up", "10.0.0.3"),
           ("worker.1", 1, "up", "10.0.0.4"))
    assert route(platform) == ("up", ["web.1=10.0.0.2:5000", "web.2=10.0.0.3:5000"])


def test_a_starting_dyno_gets_no_requests(platform: Api, shop: None) -> None:
    report(platform, ("web.1", 1, "up", "10.0.0.2"), ("web.2", 1, "starting", "10.0.0.3"))
    assert route(platform) == ("up", ["web.1=10.0.0.2:5000"])


def test_no_web_dyno_is_idle_and_all_crashed_is_crashed(platform: Api, shop: None) -> None:
    assert route(platform) == ("idle", [])
    report(platform, ("web.1", 1, "crashed", "10.0.0.2"), ("web.2", 1, "crashed", "10.0.0.3"))
    assert route(platform) == ("crashed", [])
    # A crashed dyno stays crashed; its restart is a new dyno.
    report(platform, ("web.1", 1, "crashed", "10.0.0.2"), ("web.2", 1, "up", "10.0.0.3"))
    assert route(platform) == ("crashed", [])
    report(platform, ("web.1", 1, "crashed", "10.0.0.2"), ("web.2", 1, "up", "10.0.0.5"))
    assert route(platform) == ("up", ["web.2=10.0.0.5:5000"])


def test_a_pending_releases_dynos_get_requests_only_once_it_is_promoted(
        platform: Api, shop: None) -> None:
    with platform.db() as db:
        app = db.query(App).filter_by(name="shop").one()
        releases.create(db, app, slug=slug("web", "worker"), description="Deploy 2",
                        commit="beef")
        db.commit()
    report(platform, ("web.1", 1, "up", "10.0.0.2"), ("web.2", 1, "up", "10.0.0.3"),
           ("web.1", 2, "up", "10.0.0.12"))
    assert route(platform) == ("up", ["web.1=10.0.0.2:5000", "web.2=10.0.0.3:5000"])
    report(platform, ("web.1", 1, "up", "10.0.0.2"), ("web.2", 1, "up", "10.0.0.3"),
           ("web.1", 2, "up", "10.0.0.12"), ("web.2", 2, "up", "10.0.0.13"))
    assert route(platform) == ("up", ["web.1=10.0.0.12:5000", "web.2=10.0.0.13:5000"])


def test_maintenance_wins_over_up_dynos(platform: Api, shop: None) -> None:
    report(platform, ("web.1", 1, "up", "10.0.0.2"))
    answer = platform.http.put("/v1/apps/shop/maintenance", json={"maintenance": True},
                               headers=platform.admin)
    assert answer.status_code == 200, answer.text
    assert route(platform)[0] == "maintenance"  # the router answers H80, not the dynos


def test_custom_domains_route_like_the_apps_own_hostname(platform: Api, shop: None) -> None:
    report(platform, ("web.1", 1, "up", "10.0.0.2"))
    for hostname in ("www.shop.test", "*.shop.test"):
        answer = platform.http.post("/v1/apps/shop/domains", json={"hostname": hostname},
                                    headers=platform.admin)
        assert answer.status_code == 201, answer.text
    routes = table(platform).routes
    assert set(routes) == {f"shop.{DOMAIN}", "www.shop.test", "*.shop.test"}
    assert {r.app for r in routes.values()} == {"shop"}
    assert route(platform, "*.shop.test") == ("up", ["web.1=10.0.0.2:5000"])


def test_every_route_change_moves_the_generation_the_router_acknowledges(
        platform: Api, shop: None) -> None:
    before = table(platform).generation
    report(platform, ("web.1", 1, "up", "10.0.0.2"))
    after_report = table(platform).generation
    assert after_report > before
    platform.http.post("/v1/apps/shop/domains", json={"hostname": "www.shop.test"},
                       headers=platform.admin)
    assert table(platform).generation > after_report


def test_users_cannot_read_the_route_table(platform: Api, shop: None) -> None:
    headers: dict[str, Any]
    for headers, status in (({}, 401), (platform.user, 403)):
        answer = platform.http.get("/v1/internal/routes", headers=headers)
        assert answer.status_code == status, (headers, answer.text)
