"""Zero downtime: a bounded request loop through the router during 10 deploys and 10 config
changes sees no failed request (bench/soak.py measures the same run's figures)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from tests.platform import Platform
from tests.soak import soak

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.serial]  # timing: alone


def test_no_request_fails_during_deploys_and_config_changes(platform: Platform,
                                                             tmp_path: Path) -> None:
    app = f"soak-{uuid.uuid4().hex[:6]}"
    result = soak(platform, tmp_path, app, deploys=10, config_changes=10)
    assert result["deploys"] == 10 and result["config_changes"] == 10
    assert result["failed"] == 0, json.dumps(result, indent=1)
    assert int(result["requests"]) > 100  # type: ignore[call-overload]
    releases = platform.paas("releases", "-a", app).stdout
    assert "v21" in releases, releases  # v1 + 10 deploys + 10 config changes
    platform.paas("apps:destroy", app, "--confirm", app)
