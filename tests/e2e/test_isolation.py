"""What a dyno can see: its own process tree as a non-root user, not the platform's files."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.platform import APPS, Platform, app_repo, git

pytestmark = pytest.mark.e2e


def test_a_dyno_sees_only_itself_while_the_host_sees_everything(platform: Platform,
                                                               tmp_path: Path) -> None:
    secret_dirs = f"{platform.home}:/root"
    platform.paas("apps:create", "probe")
    platform.paas("config:set", f"PROBE_PATHS={secret_dirs}", "-a", "probe")
    repo = app_repo(tmp_path, "probe")
    assert git(repo, "push", platform.remote_url("probe"), "main", check=False).returncode == 0

    inside = platform.wait_for("probe", "pid1").json()
    host = json.loads(subprocess.run(
        ["/usr/bin/python3", str(APPS / "probe" / "probe.py"), "--print"],
        env={**os.environ, "PROBE_PATHS": secret_dirs}, capture_output=True, text=True,
        check=True).stdout)

    assert inside["pid"] == 1
    assert "probe.py" in inside["pid1"]
    assert inside["uid"] != 0
    assert inside["visible"] == {str(platform.home): False, "/root": False}
    assert inside["root_listable"] is False
    assert inside["env"]["DYNO"] == "web.1" and inside["env"]["PORT"]
    assert inside["env"]["PAAS_RELEASE_VERSION"] == "v1"

    assert host["pid"] != 1
    assert host["visible"] == {str(platform.home): True, "/root": True}
    assert host["root_listable"] is True
