"""Which processes `paas up` runs for the Procfile's `node` service (paas/roles.py), and the
memory limit of a service hosting several roles (paas/service_cgroups.py)."""

from __future__ import annotations

import pytest

from paas import roles
from paas.service_cgroups import limit_mb
from paas.settings import Settings

PROCFILE = {"redis": "redis-server conf", "api": "python -m paas.api",
            "node": "python -m paas.roles agent router worker"}


def test_the_roles_a_command_hosts() -> None:
    assert roles.hosted(PROCFILE["node"]) == ["agent", "router", "worker"]
    assert roles.hosted("python -m paas.roles agent,router") == ["agent", "router"]
    assert roles.hosted(PROCFILE["api"]) == []


def test_nothing_apart_keeps_the_procfile() -> None:
    assert roles.split(PROCFILE, ()) == PROCFILE


def test_roles_apart_run_alone_and_the_host_keeps_the_rest() -> None:
    services = roles.split(PROCFILE, ("agent", "worker"))
    assert services == {"redis": "redis-server conf", "api": "python -m paas.api",
                        "node": "python -m paas.roles router",
                        "agent": "python -m paas.runtime.agent",
                        "worker": "python -m paas.builder.celery_worker"}


def test_a_host_with_every_role_apart_goes() -> None:
    services = roles.split(PROCFILE, ("agent", "router", "worker"))
    assert "node" not in services
    assert services["router"] == "python -m router"


def test_an_unknown_role_is_refused_with_the_known_ones() -> None:
    with pytest.raises(SystemExit, match=r"unknown role.*brewer.*roles: agent, router, worker"):
        roles.split(PROCFILE, ("brewer",))
    with pytest.raises(SystemExit, match="unknown: brewer"):
        roles.parse(["agent", "brewer"])


def test_a_hosting_service_is_limited_by_the_sum_of_its_roles_settings(tmp_path) -> None:
    settings = Settings(home=tmp_path, worker_memory_mb=1000, agent_memory_mb=200,
                        router_memory_mb=100)
    assert limit_mb(settings, ("worker", "agent", "router")) == 1300
    assert limit_mb(settings, ("agent",)) == 200
    assert limit_mb(settings, ("nobody",)) == 0
    unlimited = Settings(home=tmp_path, worker_memory_mb=1000, agent_memory_mb=0)
    assert limit_mb(unlimited, ("worker", "agent")) == 0
