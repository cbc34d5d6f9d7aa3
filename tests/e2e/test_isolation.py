"""What a dyno can see and do, each proven inside a dyno beside a positive control on the host:
its own non-root uid with no privileges, not the platform's files nor other apps' processes,
its own app's dynos but no other app's network; a fork bomb and a memory hog hurt only
themselves."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.test_escapes import dyno_port
from tests.platform import APPS, Platform, app_repo, git

pytestmark = pytest.mark.e2e


def deploy_probe(platform: Platform, tmp_path: Path, app: str, secrets: str) -> None:
    platform.paas("apps:create", app)
    platform.paas("config:set", f"PROBE_PATHS={secrets}", "-a", app)
    repo = app_repo(tmp_path / app, "probe")
    assert git(repo, "push", platform.remote_url(app), "main", check=False).returncode == 0


def dynos(platform: Platform, app: str) -> list[dict[str, Any]]:
    return json.loads(platform.paas("ps", "-a", app, "--json").stdout)


def host_probe(secrets: str) -> dict[str, Any]:
    return json.loads(subprocess.run(
        ["/usr/bin/python3", str(APPS / "probe" / "probe.py"), "--print"],
        env={**os.environ, "PROBE_PATHS": secrets}, capture_output=True, text=True,
        check=True).stdout)


def test_a_dyno_sees_only_itself_while_the_host_sees_everything(platform: Platform,
                                                               tmp_path: Path) -> None:
    secrets = f"{platform.home}:/root:{platform.home / 'paas.db'}:{platform.home / 'repos'}"
    deploy_probe(platform, tmp_path, "probe", secrets)
    deploy_probe(platform, tmp_path, "probe-other", secrets)
    platform.paas("ps:scale", "web=2", "-a", "probe")
    deadline = time.monotonic() + 60
    while len([d for d in dynos(platform, "probe") if d["state"] == "up"]) < 2:
        assert time.monotonic() < deadline, dynos(platform, "probe")
        time.sleep(0.3)

    inside = platform.wait_for("probe", "pid1").json()
    host = host_probe(secrets)

    assert inside["pid"] == 1 and "probe.py" in inside["pid1"]
    assert inside["uid"] >= 20000 and host["uid"] == 0
    assert inside["status"] == {"CapEff": "0000000000000000", "Seccomp": "2", "NoNewPrivs": "1"}
    assert host["status"]["CapEff"] != "0000000000000000" and host["status"]["Seccomp"] == "0"
    assert inside["usr_readonly"] is True and host["usr_readonly"] is False
    assert inside["usr_nosuid"] is True and host["usr_nosuid"] is False
    assert set(inside["visible"].values()) == {False}
    assert set(host["visible"].values()) == {True}
    assert inside["root_listable"] is False and host["root_listable"] is True
    assert len(inside["processes"]) <= 3 and all("probe.py" in p or not p
                                                 for p in inside["processes"])
    assert any("nginx" in p for p in host["processes"])
    assert inside["env"]["PAAS_RELEASE_VERSION"] == "v1"
    assert inside["default_route"] is False


def test_a_dyno_reaches_its_own_app_but_not_another_app(platform: Platform) -> None:
    # Runs after the test above, on its two apps.
    port = dyno_port(platform)
    own = [f"{d['ip']}:{port}" for d in dynos(platform, "probe") if d["state"] == "up"]
    other = dynos(platform, "probe-other")[0]
    stranger = f"{other['ip']}:{port}"
    stranger_bridge = other["ip"].rsplit(".", 1)[0] + ".1"

    def from_dyno(target: str) -> str:
        return platform.get("probe", f"/connect?to={target}").json()["result"]

    assert len(own) == 2
    for _ in range(3):  # the router picks web.1 or web.2: each reaches both
        assert [from_dyno(target) for target in own] == ["connected", "connected"]
    assert from_dyno(stranger).startswith("failed")
    assert from_dyno(f"{stranger_bridge}:{platform.env['PAAS_API_PORT']}").startswith("failed")
    with httpx.Client(timeout=5) as client:  # the positive control: the host reaches both
        assert client.get(f"http://{stranger}/").status_code == 200
        assert client.get(f"http://{own[0]}/").status_code == 200


def test_a_fork_bomb_and_a_memory_hog_hurt_only_themselves(platform: Platform) -> None:
    failures: list[str] = []
    stop = threading.Event()

    def visit() -> None:
        while not stop.is_set():
            try:
                if platform.get("probe-other").status_code != 200:
                    failures.append("status")
            except httpx.HTTPError as error:
                failures.append(repr(error))
            time.sleep(0.05)

    visitor = threading.Thread(target=visit, daemon=True)
    visitor.start()
    try:
        bomb = platform.paas("run", "-a", "probe", "--size", "eco", "--",
                             "exec /usr/bin/python3 probe.py --forkbomb", check=False)
        hog = platform.paas("run", "-a", "probe", "--size", "eco", "--",
                            "exec /usr/bin/python3 probe.py --hog", check=False)
    finally:
        stop.set()
        visitor.join(10)

    assert "fork failed after" in bomb.stdout, bomb.stdout + bomb.stderr
    children = int(bomb.stdout.split("fork failed after ")[1].split()[0])
    assert 0 < children < 128  # eco: 128 pids
    assert hog.returncode == 137, hog.stdout[-500:] + hog.stderr
    assert "holding 16 MB" in hog.stdout and "holding 512 MB" not in hog.stdout
    deadline = time.monotonic() + 30
    while "Error R15 (Memory quota vastly exceeded)" not in (
            text := platform.paas("logs", "-a", "probe", "--ps", "run.2").stdout):
        assert time.monotonic() < deadline, text
        time.sleep(0.5)
    assert failures == []
    assert platform.get("probe-other").status_code == 200
