"""The runc wrapper against real runc."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from paas.runtime.runc import Runc

LISTINGS = 30


@pytest.fixture
def churning_root(tmp_path: Path) -> Iterator[Path]:
    """A runc root whose entries appear and vanish all the time, as containers do while other
    processes create and delete them."""
    root = tmp_path / "runc"
    root.mkdir()
    stop = threading.Event()

    def churn() -> None:
        while not stop.is_set():
            for i in range(20):
                (root / f"gone-{i}").mkdir()
            for i in range(20):
                (root / f"gone-{i}").rmdir()

    worker = threading.Thread(target=churn)
    worker.start()
    yield root
    stop.set()
    worker.join()


def test_listing_survives_containers_deleted_meanwhile(churning_root: Path) -> None:
    runc = Runc(churning_root)
    # The race is real: a bare `runc list` fails when an entry vanishes while it lists.
    bare = [runc.call("list", "--format", "json") for _ in range(LISTINGS)]
    assert any("no such file or directory" in result.stderr for result in bare
               if result.returncode != 0)

    assert [runc.states() for _ in range(LISTINGS)] == [{}] * LISTINGS
