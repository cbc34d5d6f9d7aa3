"""Scheduling as the agents see it: what each node is told to run (`GET .../desired`), where
dynos are placed (spread, capacity, kept across deploys, moved off lost nodes), and what each
node's report changes (only its own rows), over SQLite with the real internal routes."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from paas import dynos, oneoffs, releases, routes, scheduling, usage
from paas.models import App, Node
from paas.scheduling import DynoKey, Room, assign
from paas.wire import DesiredState
from tests.unit.internal_api import Api, api, deployed, make_current, slug

GRACE = 30.0


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[Api]:
    yield from api(tmp_path, node_grace=GRACE)


def register(platform: Api, node: str, memory_mb: int = 4096) -> None:
    answer = platform.http.put(f"/v1/internal/nodes/{node}", json={"memory_mb": memory_mb},
                               headers=platform.service)
    assert answer.status_code == 200, answer.text


def desired(platform: Api, node: str) -> DesiredState:
    answer = platform.http.get(f"/v1/internal/nodes/{node}/desired", headers=platform.service)
    assert answer.status_code == 200, answer.text
    return DesiredState.from_json(answer.json())


def names(state: DesiredState) -> list[str]:
    return sorted(f"{d.app}:{d.name}" for d in state.dynos)


def report(platform: Api, node: str, *dynos_: dict[str, Any]) -> None:
    answer = platform.http.put(f"/v1/internal/nodes/{node}/dynos",
                               json={"dynos": list(dynos_)}, headers=platform.service)
    assert answer.status_code == 200, answer.text


def dyno(dyno_id: str, name: str, state: str = "up", app: str = "shop", release: int = 1,
         ip: str = "10.0.0.1") -> dict[str, Any]:
    process_type, _, index = name.partition(".")
    return {"id": dyno_id, "app": app, "release": release, "type": process_type,
            "index": int(index), "state": state, "ip": ip, "port": 5000}


def age(platform: Api, node: str, seconds: float) -> None:
    """Makes `node`'s last heartbeat `seconds` old."""
    with platform.db() as db:
        db.get(Node, node).heartbeat_at = time.time() - seconds
        db.commit()


def sweep(platform: Api) -> None:
    """The reaper's look at the nodes."""
    platform.ctx.write(lambda db, _events: scheduling.sweep(db, time.time(), GRACE, 5000))


def peers(platform: Api, app: str = "shop") -> list[str]:
    with platform.db() as db:
        route = routes.table(db, "example.com")[f"{app}.example.com"]
    return sorted(peer.addr for peer in route.peers)


# ---- what a node is told to run --------------------------------------------------------------


def test_a_node_gets_the_current_release_its_formation_and_the_live_one_offs(
        platform: Api) -> None:
    with platform.db() as db:
        app = deployed(db, "shop", 3, "web", "worker", web=2, worker=1)
        oneoffs.run(db, app, releases.current(db, app), "rake db:migrate", attach=False,
                    size="basic", env={"ASKED": "yes"})
        db.commit()
    register(platform, "node-a")

    state = desired(platform, "node-a")
    assert names(state) == ["shop:run.1", "shop:web.1", "shop:web.2", "shop:worker.1"]
    web1 = next(d for d in state.dynos if d.name == "web.1")
    assert (web1.node, web1.release, web1.slot, web1.uid) == ("node-a", 1, 3, 20003)
    assert web1.command == ("/bin/sh", "-c", "run-web")
    assert web1.layers == ("sha256:" + "a" * 64,)
    assert web1.env["FROM_SLUG"] == "1" and web1.env["PORT"] == "5000"
    assert web1.env["DYNO"] == "web.1" and not web1.oneoff
    run1 = next(d for d in state.dynos if d.name == "run.1")
    assert run1.oneoff and run1.env["ASKED"] == "yes"
    assert state.apps["shop"].stop_grace is None


def test_a_pending_release_runs_beside_the_current_one_on_the_same_node(platform: Api) -> None:
    with platform.db() as db:
        app = deployed(db, "shop", 3, "web", web=1)
        releases.create(db, app, slug=slug("web"), description="Deploy 2", commit="beef")
        db.commit()
    register(platform, "node-a")
    register(platform, "node-b")
    given = {node: {(d.name, d.release) for d in desired(platform, node).dynos}
             for node in ("node-a", "node-b")}
    assert sorted(given.values(), key=len) == [set(), {("web.1", 1), ("web.1", 2)}]


def test_an_unregistered_node_is_told_to_register(platform: Api) -> None:
    answer = platform.http.get("/v1/internal/nodes/nobody/desired", headers=platform.service)
    assert answer.status_code == 404
    assert "node 'nobody' is not registered" in answer.json()["message"]
    assert "PUT /v1/internal/nodes/nobody" in answer.json()["message"]
    answer = platform.http.put("/v1/internal/nodes/nobody/dynos", json={"dynos": []},
                               headers=platform.service)
    assert answer.status_code == 404


def test_messages_that_do_not_match_their_wire_type_are_a_400(platform: Api) -> None:
    answer = platform.http.put("/v1/internal/nodes/node-a", json={"memory": 10},
                               headers=platform.service)
    assert answer.status_code == 400
    assert answer.json()["message"] == "NodeInfo: memory_mb is missing"
    register(platform, "node-a")
    answer = platform.http.put("/v1/internal/nodes/node-a/dynos",
                               json={"dynos": [{**dyno("d1", "web.1"), "state": "asleep"}]},
                               headers=platform.service)
    assert answer.status_code == 400
    assert "NodeReport.dynos[0].state: 'asleep' is not one of" in answer.json()["message"]


def test_users_cannot_register_nodes(platform: Api) -> None:
    for headers, status in (({}, 401), (platform.user, 403)):
        answer = platform.http.put("/v1/internal/nodes/node-a", json={"memory_mb": 1},
                                   headers=headers)
        assert answer.status_code == status


# ---- placement ---------------------------------------------------------------------------


def test_four_web_dynos_spread_two_and_two_over_two_nodes(platform: Api) -> None:
    with platform.db() as db:
        deployed(db, "shop", 3, "web", web=4)
    register(platform, "node-a")
    register(platform, "node-b")
    a, b = names(desired(platform, "node-a")), names(desired(platform, "node-b"))
    assert len(a) == len(b) == 2 and set(a).isdisjoint(b)


def test_each_process_type_spreads_on_its_own() -> None:
    memory = {DynoKey("shop", t, i): 512 for t in ("web", "worker") for i in (1, 2)}
    placed = assign(memory, [Room("a", 8192), Room("b", 8192)], {}).nodes
    by_type = Counter((key.type, node) for key, node in placed.items())
    assert by_type == {("web", "a"): 1, ("web", "b"): 1, ("worker", "a"): 1,
                       ("worker", "b"): 1}


def test_a_new_dyno_goes_to_the_node_with_the_most_free_memory() -> None:
    current = {DynoKey("other", "web", 1): "a"}
    memory = {DynoKey("other", "web", 1): 1024, DynoKey("shop", "web", 1): 512}
    placed = assign(memory, [Room("a", 4096), Room("b", 4096)], current).nodes
    assert placed[DynoKey("shop", "web", 1)] == "b"


def test_no_node_gets_more_than_its_memory_and_ps_says_why_a_dyno_waits(
        platform: Api) -> None:
    with platform.db() as db:
        deployed(db, "shop", 3, "web", web=3)  # basic: 512 MB each
    register(platform, "node-a", memory_mb=1024)
    assert len(desired(platform, "node-a").dynos) == 2
    with platform.db() as db:
        app = db.query(App).one()
        waiting = [d for d in dynos.listing(db, app) if d["state"] == dynos.WAITING]
    assert [(d["name"], d["reason"]) for d in waiting] == [
        ("web.3", "waiting: no node has 512 MB free")]


def test_without_any_node_dynos_wait_for_one() -> None:
    placement = assign({DynoKey("shop", "web", 1): 512}, [], {})
    assert placement.waiting == {DynoKey("shop", "web", 1):
                                 "waiting: no node is up (is an agent running?)"}


def test_a_deploys_new_dyno_lands_where_the_old_one_runs(platform: Api) -> None:
    with platform.db() as db:
        deployed(db, "shop", 3, "web", web=2)
    register(platform, "node-a")
    register(platform, "node-b")
    before = {n: names(desired(platform, n)) for n in ("node-a", "node-b")}
    with platform.db() as db:
        app = db.query(App).one()
        make_current(app, releases.create(db, app, slug=slug("web"), description="Deploy 2",
                                          commit="beef"))
        db.commit()
    after = {n: names(desired(platform, n)) for n in ("node-a", "node-b")}
    assert after == before


def test_a_lost_nodes_dynos_move_to_a_live_node_after_the_grace(platform: Api) -> None:
    with platform.db() as db:
        deployed(db, "shop", 3, "web", web=2)
    register(platform, "node-a")
    register(platform, "node-b")
    assert len(desired(platform, "node-a").dynos) == 1
    age(platform, "node-a", GRACE - 5)
    sweep(platform)
    assert len(desired(platform, "node-b").dynos) == 1  # within the grace: nothing moves
    age(platform, "node-a", GRACE + 5)
    sweep(platform)
    assert names(desired(platform, "node-b")) == ["shop:web.1", "shop:web.2"]


def test_a_lost_node_that_comes_back_gets_none_of_its_old_dynos(platform: Api) -> None:
    with platform.db() as db:
        deployed(db, "shop", 3, "web", web=2)
    register(platform, "node-a")
    register(platform, "node-b")
    desired(platform, "node-a")
    age(platform, "node-a", GRACE + 5)
    sweep(platform)
    assert desired(platform, "node-a").dynos == ()  # its heartbeat again: back, but empty
    assert len(desired(platform, "node-b").dynos) == 2


def test_a_running_one_off_stays_on_its_lost_node() -> None:
    key = DynoKey("shop", "run", 1, True)
    placement = assign({key: 512}, [Room("b", 4096)], {key: "a"}, pinned={key: "a"})
    assert placement.nodes == {key: "a"}


# ---- reports -----------------------------------------------------------------------------


def test_a_report_replaces_only_its_own_nodes_rows(platform: Api) -> None:
    with platform.db() as db:
        deployed(db, "shop", 3, "web", web=2)
    register(platform, "node-a")
    register(platform, "node-b")
    report(platform, "node-a", dyno("a1", "web.1", ip="10.0.0.1"))
    report(platform, "node-b", dyno("b1", "web.2", ip="10.1.0.1"))
    report(platform, "node-a", dyno("a1", "web.1", ip="10.0.0.1"))
    with platform.db() as db:
        rows = {(d.id, d.node) for d in dynos.for_app(db, db.query(App).one())}
    assert rows == {("a1", "node-a"), ("b1", "node-b")}
    assert peers(platform) == ["10.0.0.1:5000", "10.1.0.1:5000"]
    report(platform, "node-a")  # node-a's dynos are gone: node-b's stay
    assert peers(platform) == ["10.1.0.1:5000"]


def test_ps_shows_each_dynos_node(platform: Api) -> None:
    with platform.db() as db:
        deployed(db, "shop", 3, "web", web=1)
    register(platform, "node-a")
    report(platform, "node-a", dyno("a1", "web.1"))
    with platform.db() as db:
        (listed,) = dynos.listing(db, db.query(App).one())
    assert (listed["name"], listed["node"], listed["state"]) == ("web.1", "node-a", "up")


def test_a_lost_nodes_up_dynos_serve_until_their_replacement_is_up(platform: Api) -> None:
    with platform.db() as db:
        deployed(db, "shop", 3, "web", web=1)
    register(platform, "node-a")
    desired(platform, "node-a")
    report(platform, "node-a", dyno("a1", "web.1", ip="10.0.0.1"))
    register(platform, "node-b")
    age(platform, "node-a", GRACE + 5)  # its agent stopped; its dyno goes on running
    sweep(platform)
    assert peers(platform) == ["10.0.0.1:5000"]
    assert names(desired(platform, "node-b")) == ["shop:web.1"]
    report(platform, "node-b", dyno("b1", "web.1", state="starting", ip="10.1.0.1"))
    assert peers(platform) == ["10.0.0.1:5000"]  # no request fails meanwhile
    report(platform, "node-b", dyno("b1", "web.1", ip="10.1.0.1"))
    assert peers(platform) == ["10.1.0.1:5000"]
    with platform.db() as db:
        assert [d.node for d in dynos.for_app(db, db.query(App).one())] == ["node-b"]


def test_a_one_off_is_lost_only_when_its_own_node_stops_reporting_it(platform: Api) -> None:
    with platform.db() as db:
        app = deployed(db, "shop", 3, "web", web=0)
        oneoffs.run(db, app, releases.current(db, app), "sleep 60", attach=False,
                    size="basic", env={})
        db.commit()
    register(platform, "node-a")
    register(platform, "node-b")
    runner = next(n for n in ("node-a", "node-b") if desired(platform, n).dynos)
    other = {"node-a": "node-b", "node-b": "node-a"}[runner]
    report(platform, runner, {**dyno("r1", "run.1"), "oneoff": True})
    report(platform, other)

    def state() -> str:
        with platform.db() as db:
            return oneoffs.get(db, db.query(App).one(), "run.1").state

    assert state() == "running"
    report(platform, runner)
    assert state() == "exited"


def test_a_process_types_memory_figure_sums_every_nodes_dynos(platform: Api) -> None:
    with platform.db() as db:
        deployed(db, "shop", 3, "web", web=2)
    register(platform, "node-a")
    register(platform, "node-b")
    report(platform, "node-a", {**dyno("a1", "web.1"), "memory_mb": 100.0})
    report(platform, "node-b", {**dyno("b1", "web.2"), "memory_mb": 50.0})
    (point,) = usage.history(platform.ctx.redis, "shop")["web"]  # type: ignore[arg-type]
    assert point["memory_mb"] == 150.0


def test_a_release_no_node_has_room_for_fails_saying_so(platform: Api) -> None:
    with platform.db() as db:
        app = App(name="shop", slot=3)
        db.add(app)
        db.flush()
        release = releases.create(db, app, slug=slug("web"), description="Deploy",
                                  commit="c0ffee")
        db.commit()
        release_id = release.id
    register(platform, "node-a", memory_mb=256)  # a basic dyno needs 512 MB
    assert desired(platform, "node-a").dynos == ()
    error = platform.ctx.write(lambda db, events: releases.expire(
        db, release_id, time.time() + 100, 60, "PAAS_BOOT_TIMEOUT", events))
    assert error is not None
    assert "web.1 is waiting: no node has 512 MB free" in error
