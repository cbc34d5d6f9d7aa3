"""`paas up` / `paas down`: the control plane stops without taking the apps down, comes back
adopting them, and `paas down` leaves nothing behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.platform import PAAS, Platform, app_repo, git, second_subnet

pytestmark = pytest.mark.e2e


@pytest.fixture
def own_platform() -> Iterator[Platform]:
    """A platform of this test's own: the test stops and restarts its control plane."""
    subnet = second_subnet()
    platform = Platform.create(PAAS_DYNO_SUBNET=subnet)
    try:
        platform.up()
        yield platform
    finally:
        platform.down()


def _host_leftovers(install_id: str, home: Path) -> list[str]:
    """This installation's bridges, veths, network namespaces, mounts and service cgroups
    still on the host."""
    links = [name.split("@")[0] for name in os.listdir("/sys/class/net")]
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    mounts = Path("/proc/self/mounts").read_text()
    return ([name for name in links if name.startswith((f"pb{install_id}", f"v{install_id}"))]
            + [line for line in netns.splitlines() if line.startswith(f"p{install_id}-")]
            + [line for line in mounts.splitlines() if str(home) in line]
            + [str(p) for p in Path("/sys/fs/cgroup/memory").glob(f"paas-{install_id}-services")])


def _install_id(platform: Platform) -> str:
    code = "from paas.settings import load; print(load().install_id)"
    return subprocess.run([sys.executable, "-c", code], env=platform.env, capture_output=True,
                          text=True, check=True).stdout.strip()


def test_apps_outlive_the_control_plane_and_paas_down_cleans_up(own_platform: Platform,
                                                               tmp_path: Path) -> None:
    platform = own_platform
    platform.paas("apps:create", "survivor")
    repo = app_repo(tmp_path, "procfile-only")
    assert git(repo, "push", platform.remote_url("survivor"), "main",
               check=False).returncode == 0
    platform.wait_for("survivor", "Procfile-only app")
    dynos_before = json.loads(platform.paas("ps", "-a", "survivor", "--json").stdout)

    platform.stop_control_plane()
    assert "Procfile-only app" in platform.get("survivor").text

    platform.up()
    platform.wait_for("survivor", "Procfile-only app")
    dynos_after = json.loads(platform.paas("ps", "-a", "survivor", "--json").stdout)
    assert [d["id"] for d in dynos_after] == [d["id"] for d in dynos_before]
    assert [d["restarts"] for d in dynos_after] == [0]

    install_id = _install_id(platform)
    assert _host_leftovers(install_id, platform.home)
    result = platform.paas("down")
    assert "paas is down" in result.stdout
    assert _host_leftovers(install_id, platform.home) == []
    with pytest.raises(httpx.HTTPError):
        platform.get("survivor")


def test_git_remote_sets_up_credentials_for_a_plain_push(platform: Platform,
                                                         tmp_path: Path) -> None:
    platform.paas("apps:create", "remote-app")
    repo = app_repo(tmp_path, "procfile-only")
    env = {**platform.env, "HOME": str(tmp_path)}
    subprocess.run([PAAS, "git:remote", "-a", "remote-app"], cwd=repo, env=env, check=True,
                   capture_output=True)

    result = subprocess.run(["git", "push", "paas", "main"], cwd=repo, env=env,
                            capture_output=True, text=True, timeout=300)

    assert result.returncode == 0, result.stderr
    assert "Released v1" in result.stderr
    info = json.loads(platform.paas("apps:info", "--json", cwd=repo).stdout)
    assert info["name"] == "remote-app"


def test_the_admin_token_is_private_and_the_api_refuses_requests_without_it(
        platform: Platform) -> None:
    assert (platform.home / "admin-token").stat().st_mode & 0o777 == 0o600
    assert httpx.get(f"{platform.api_url}/healthz").json() == {"status": "ok"}
    refused = httpx.get(f"{platform.api_url}/v1/apps")
    assert refused.status_code == 401
    assert "paas login" in refused.json()["message"]
    wrong = httpx.get(f"{platform.api_url}/v1/apps", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401


def test_destroying_an_app_needs_its_name_and_takes_it_off_the_router(
        platform: Platform, tmp_path: Path) -> None:
    platform.paas("apps:create", "doomed")
    repo = app_repo(tmp_path, "procfile-only")
    assert git(repo, "push", platform.remote_url("doomed"), "main", check=False).returncode == 0
    platform.wait_for("doomed", "Procfile-only app")

    refused = platform.paas("apps:destroy", "doomed", check=False)
    assert refused.returncode != 0
    assert "--confirm doomed" in refused.stderr
    platform.paas("apps:destroy", "doomed", "--confirm", "doomed")

    assert "doomed" not in platform.paas("apps").stdout
    deadline = time.monotonic() + 30
    while platform.get("doomed").status_code != 404 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert platform.get("doomed").status_code == 404
    missing = platform.paas("apps:info", "-a", "doomed", check=False)
    assert missing.returncode != 0 and "no app named 'doomed'" in missing.stderr
