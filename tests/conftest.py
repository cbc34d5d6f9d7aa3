"""Test distribution over pytest-xdist workers (`make test`: `-n 3 --dist loadfile`).

Each test file runs on one worker, its tests in order: a file's module-scoped platform is
started once, and tests that go on from an earlier test's apps find them. (Not `--dist
loadgroup`: pytest-xdist 3.8 groups by rewriting `item._nodeid`, which pytest 9.2 no longer
reads, so its groups are silently ignored.) Every worker has its own session platform, ports
and dyno subnets (tests/platform.py shares PAAS_TEST_PORTS and PAAS_TEST_SUBNETS out between
workers) and its own temporary homes, so host-global names (netns, cgroups, nft tables: the
install id is derived from PAAS_HOME) differ too. Files marked `serial` (memory and load
measurements) run after the others, alone.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import postgres
from tests.pebble import Pebble
from tests.platform import free_port

# First the long end-to-end files, so the short ones fill the workers' last minutes.
_ORDER = {"e2e": 0, "integration": 1, "unit": 2}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: _ORDER.get(item.path.parent.name, 1))


@pytest.fixture(scope="session")
def pg_cluster() -> postgres.Cluster:
    """The session's PostgreSQL 15 cluster (tests/postgres.py), started on first use."""
    return postgres.cluster()


@pytest.fixture
def postgres_url(pg_cluster: postgres.Cluster) -> Iterator[str]:
    """A new, empty PostgreSQL database for one test."""
    yield pg_cluster.create_database()


def pytest_sessionfinish(session: pytest.Session) -> None:
    postgres.stop_cluster()


@pytest.fixture(scope="session")
def pebble() -> Iterator[Pebble]:
    """Pebble (a real ACME CA) once per session (per xdist worker: ports are the worker's).
    It validates http-01 on `pebble.http_port`: the router port of the platform that uses it."""
    base = Path(tempfile.mkdtemp(prefix="paas-pebble-"))
    ca = Pebble(base, http_port=free_port())
    try:
        ca.start()
        yield ca
    finally:
        ca.stop()
        shutil.rmtree(base, ignore_errors=True)
