"""Load, bounded and on loopback: concurrent pushes to several apps all queue, build and go
live; many apps on one host all answer through the router (figures: bench/load.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.load import answering, deploy_apps
from tests.platform import Platform, second_subnet

pytestmark = [pytest.mark.e2e, pytest.mark.serial]  # load: alone on the host


@pytest.fixture(scope="module")
def crowded() -> Iterator[Platform]:
    """A platform of this module's own (its 50 apps go with it), on the second test subnet:
    the session's platform may be running beside it. Fifty deploys at once queue behind the
    one agent, which starts dynos one at a time: on a loaded 2-core host the last ones go live
    after the default release deadline (counted from each release's creation), so this
    platform's operator gives them a wider margin."""
    platform = Platform.create(PAAS_DYNO_SUBNET=second_subnet(), PAAS_RELEASE_MARGIN="600")
    try:
        platform.up()
        yield platform
    finally:
        platform.down()


def test_five_concurrent_pushes_to_five_apps_all_go_live(crowded: Platform,
                                                         tmp_path: Path) -> None:
    names = [f"crowd-{i:02d}" for i in range(5)]

    failures = deploy_apps(crowded, tmp_path, names)

    assert failures == []
    assert answering(crowded, names) == []
    for name in names:
        builds = json.loads(crowded.paas("builds", "-a", name, "--json").stdout)
        assert [b["status"] for b in builds] == ["succeeded"]


def test_fifty_apps_on_one_host_all_answer_through_the_router(crowded: Platform,
                                                               tmp_path: Path) -> None:
    names = [f"crowd-{i:02d}" for i in range(50)]
    existing = {a["name"] for a in json.loads(crowded.paas("apps", "--json").stdout)}

    assert deploy_apps(crowded, tmp_path, [n for n in names if n not in existing]) == []

    assert answering(crowded, names) == []
    dynos = json.loads(crowded.paas("ps", "-a", names[-1], "--json").stdout)
    assert [(d["name"], d["state"]) for d in dynos] == [("web.1", "up")]
