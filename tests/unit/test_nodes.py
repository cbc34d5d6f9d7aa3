"""Nodes as the admin sees them (`GET /v1/nodes`, `paas nodes`) and as they register."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from paas import nodes
from paas.api import internal
from paas.api import nodes as nodes_api
from paas.models import Node
from tests.unit.internal_api import Api, api, deployed

GRACE = 30.0


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[Api]:
    yield from api(tmp_path, internal.routes, nodes_api.routes, node_grace=GRACE)


def register(platform: Api, node: str, **info: object) -> int:
    return platform.http.put(f"/v1/internal/nodes/{node}", json={"memory_mb": 2048, **info},
                             headers=platform.service).status_code


def listed(platform: Api) -> dict[str, dict[str, object]]:
    answer = platform.http.get("/v1/nodes", headers=platform.admin)
    assert answer.status_code == 200, answer.text
    return {n["name"]: n for n in answer.json()}


def test_a_registered_node_is_listed_ready_with_its_capacity(platform: Api) -> None:
    assert register(platform, "node-a", backend="runc", dyno_subnet="10.213.0.0/16") == 200
    (node,) = listed(platform).values()
    assert (node["name"], node["state"], node["backend"], node["dyno_subnet"]) == (
        "node-a", "ready", "runc", "10.213.0.0/16")
    assert (node["memory_used_mb"], node["memory_mb"], node["dynos"]) == (0, 2048, 0)
    assert node["heartbeat_age"] < 5


def test_registering_again_updates_the_node_and_keeps_its_first_registration(
        platform: Api) -> None:
    register(platform, "node-a")
    first = listed(platform)["node-a"]["registered_at"]
    register(platform, "node-a", memory_mb=8192)
    node = listed(platform)["node-a"]
    assert (node["memory_mb"], node["registered_at"]) == (8192, first)


def test_memory_and_dynos_count_what_the_node_was_given(platform: Api) -> None:
    with platform.db() as db:
        deployed(db, "shop", 3, "web", web=2)
    register(platform, "node-a")
    platform.http.get("/v1/internal/nodes/node-a/desired", headers=platform.service)
    platform.http.put("/v1/internal/nodes/node-a/dynos", headers=platform.service, json={
        "dynos": [{"id": "d1", "app": "shop", "release": 1, "type": "web", "index": 1,
                   "state": "up"}]})
    node = listed(platform)["node-a"]
    assert (node["memory_used_mb"], node["dynos"]) == (1024, 1)


def test_a_node_silent_for_longer_than_the_grace_is_lost(platform: Api) -> None:
    register(platform, "node-a")
    register(platform, "node-b")
    with platform.db() as db:
        db.get(Node, "node-a").heartbeat_at = time.time() - GRACE - 1
        db.commit()
    assert {n: v["state"] for n, v in listed(platform).items()} == {
        "node-a": "lost", "node-b": "ready"}
    platform.http.get("/v1/internal/nodes/node-a/desired", headers=platform.service)
    assert listed(platform)["node-a"]["state"] == "ready"  # asking is a heartbeat


def test_only_the_admin_lists_nodes(platform: Api) -> None:
    answer = platform.http.get("/v1/nodes", headers=platform.user)
    assert answer.status_code == 403
    assert answer.json()["message"] == "only the platform's admin may do this"


@pytest.mark.parametrize("name", ["-dash", "a b", "x" * 64, "dots/slash"])
def test_a_node_name_is_a_host_name(platform: Api, name: str) -> None:
    status = register(platform, name)
    assert status in (404, 422)  # a slash is no route at all
    assert listed(platform) == {}


def test_a_node_states_its_memory(platform: Api) -> None:
    answer = platform.http.put("/v1/internal/nodes/node-a", json={"memory_mb": 0},
                               headers=platform.service)
    assert answer.status_code == 422 and "memory_mb" in answer.json()["message"]


def test_the_api_starting_again_gives_every_node_its_grace_afresh(platform: Api) -> None:
    """After an API outage longer than the grace, the first node to ask again must not find
    the others lost and take their dynos."""
    register(platform, "node-a")
    with platform.db() as db:
        db.get(Node, "node-a").heartbeat_at = time.time() - GRACE - 60
        nodes.api_started(db, time.time())
        db.commit()
    assert listed(platform)["node-a"]["state"] == "ready"
