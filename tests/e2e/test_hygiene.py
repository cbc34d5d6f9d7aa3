"""What a platform that runs for months needs: dyno output on disk stays bounded while `paas
logs` shows all of it, app repositories are repacked after pushes, and an app's bridge goes
with its last dyno."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.e2e.test_dynos import deploy, eventually, logs, ps
from tests.platform import Platform, commit_all, git

pytestmark = pytest.mark.e2e

LOG_MAX = 1024 * 1024  # the test platform's PAAS_DYNO_LOG_MAX_BYTES
# About 3 MB of output, then the dyno idles.
FLOOD = """import sys
for i in range(30000):
    sys.stdout.write("flood %06d " % i + "." * 80 + "\\n")
print("flood done", flush=True)
"""


def bridge_of(ip: str) -> str | None:
    """The host interface holding the .1 of a dyno's /24."""
    gateway = ".".join(ip.split(".")[:3]) + ".1/24"
    for line in subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True,
                               text=True, check=True).stdout.splitlines():
        fields = line.split()
        if f"inet {gateway}" in line:
            return fields[1]
    return None


def test_bounded_dyno_logs_repacked_repos_and_bridges_that_go_with_the_app(
        platform: Platform, tmp_path: Path) -> None:
    app = "tidy"
    repo = deploy(platform, tmp_path, app)
    (repo / "flood.py").write_text(FLOOD)
    (repo / "Procfile").write_text((repo / "Procfile").read_text()
                                   + "flood: /usr/bin/python3 flood.py; exec sleep 600\n")
    commit_all(repo, "a flood")
    # The app's repository repacks once pushes leave more than one pack (lowered threshold).
    bare = platform.home / "repos" / f"{app}.git"
    subprocess.run(["git", "config", "gc.autoPackLimit", "1"], cwd=bare, check=True)
    pushed = git(repo, "push", platform.remote_url(app), "main", check=False)
    assert pushed.returncode == 0, pushed.stderr
    eventually(lambda: len(list((bare / "objects" / "pack").glob("*.pack"))) == 1,
               what="the repository repacked")
    assert git(repo, "ls-remote", platform.remote_url(app), "main").stdout.split()[0] == (
        git(repo, "rev-parse", "HEAD").stdout.strip())

    platform.paas("ps:scale", "flood=1", "-a", app)
    eventually(lambda: "flood done" in logs(platform, app, "--ps", "flood.1"), timeout=120,
               what="the whole flood shipped to the log")
    flood = next(d for d in ps(platform, app) if d["type"] == "flood")
    on_disk = platform.home / "dynos" / flood["id"] / "output.log"
    # What is on disk is the tail; `paas logs` had every line, the newest 1,500 kept.
    assert on_disk.stat().st_size <= LOG_MAX + 256 * 1024
    assert on_disk.read_bytes().endswith(b"flood done\n")
    newest = json.loads(platform.paas("logs", "-a", app, "-n", "1500", "--ps", "flood.1",
                                      "--json").stdout)
    lines = [e["line"] for e in newest if e["source"].startswith("app[")]
    assert lines[-1] == "flood done"
    assert lines[-2].startswith("flood 029999 ")
    numbers = [int(line.split()[1]) for line in lines[:-1]]
    assert numbers == list(range(numbers[0], 30000))

    web = next(d for d in ps(platform, app) if d["type"] == "web")
    bridge = bridge_of(web["ip"])
    assert bridge is not None
    platform.paas("apps:destroy", app, "--confirm", app)
    eventually(lambda: bridge_of(web["ip"]) is None, what=f"{bridge} removed")
    assert not Path(f"/sys/class/net/{bridge}").exists()
