"""What a dyno writes stays its own: a disk of its size's that fills to ENOSPC in memory charged
to the dyno (the host's disk, the platform and other apps do not notice), output that can
flood while shipping is stopped and leaves only a bound on disk (the rest counted in an L10
line), symlinks it plants that root never follows, and mount paths that name nothing of the
host."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import time
import uuid
from pathlib import Path

import pytest

from tests.e2e.test_dynos import Visitor, deploy, eventually, logs, ps, wait_for_api
from tests.platform import Platform, app_repo, commit_all, git

pytestmark = pytest.mark.e2e

MB = 1024 * 1024
ECO_DISK = 128 * MB  # formation.SIZES["eco"].disk_mb
LOG_MAX = 1024 * 1024  # the test platform's PAAS_DYNO_LOG_MAX_BYTES
UNSHIPPED_MAX = 8 * MB  # PAAS_DYNO_LOG_UNSHIPPED_MAX_BYTES's default


def free_bytes(path: Path) -> int:
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize


def cgroup_stat(dyno_id: str) -> dict[str, int]:
    found = list(Path("/sys/fs/cgroup/memory").glob(f"paas-*/{dyno_id}/memory.stat"))
    assert len(found) == 1, found
    return {name: int(value) for name, value in
            (line.split() for line in found[0].read_text().splitlines())}


def dyno_of(platform: Platform, app: str, name: str) -> dict:
    return eventually(lambda: next((d for d in ps(platform, app) if d["name"] == name
                                    and d["state"] == "up"), None), what=f"{name} up")


FILL = ("dd if=/dev/zero of=/app/fill bs=1M count=2048 2>&1; echo \"dd exit $?\"; "
        "df -k /app | tail -1; echo filled; exec sleep 600")


def test_a_dyno_that_fills_its_disk_gets_enospc_in_its_own_memory(platform: Platform,
                                                                   tmp_path: Path) -> None:
    deploy(platform, tmp_path / "a", "filler")
    deploy(platform, tmp_path / "b", "neighbour")
    platform.wait_for("neighbour", "hello from web.1 v1")
    before = free_bytes(platform.home)

    with Visitor(platform, "neighbour") as neighbour, Visitor(platform, "filler") as own:
        platform.paas("run", "--detach", "--size", "eco", "-a", "filler", "--", FILL)
        text = eventually(lambda: "app[run.1]: filled" in (
            t := logs(platform, "filler", "--ps", "run.1")) and t, what="the disk filled")
        dyno = dyno_of(platform, "filler", "run.1")
        # The file is there while the dyno sleeps: in its memory, not on the host's disk.
        used = before - free_bytes(platform.home)
        charged = cgroup_stat(dyno["id"])["shmem"]
        # ...and `paas ps` counts it as the dyno's memory.
        eventually(lambda: dyno_of(platform, "filler", "run.1")["memory_mb"] >= 120,
                   what="the files counted in the dyno's memory")
    assert "No space left on device" in text, text
    assert "dd exit 1" in text, text
    copied = int(re.search(r"(\d+) bytes .* copied", text).group(1))
    assert ECO_DISK - 2 * MB <= copied <= ECO_DISK, text
    assert ECO_DISK - 2 * MB <= charged <= ECO_DISK + 2 * MB
    assert used < 1024 * MB  # the dyno asked for 2 GiB
    assert neighbour.failures == [] and neighbour.answers > 10
    assert own.failures == []  # the app's web dyno has a disk of its own

    # Positive control: a small write on a fresh dyno succeeds and reads back.
    small = platform.paas("run", "--size", "eco", "-a", "filler", "--",
                          "echo small > /app/small && cat /app/small && df -k /tmp | tail -1")
    assert small.stdout.splitlines()[0] == "small", small.stdout
    assert re.search(r"\s131072\s", small.stdout), small.stdout  # /tmp: the eco disk too
    platform.paas("ps:stop", "run.1", "-a", "filler")
    eventually(lambda: not [d for d in ps(platform, "filler") if d["type"] == "run"],
               what="the filler removed")
    assert free_bytes(platform.home) > before - 1024 * MB


FLOOD = """
import os, sys, time
for call, name in ((lambda: os.posix_fallocate(1, 0, 1 << 30), "fallocate"),
                   (lambda: os.ftruncate(1, 1 << 30), "ftruncate")):
    try:
        call()
        print(name, "of stdout worked", flush=True)
    except OSError as error:
        print(name, "of stdout refused:", error.strerror, flush=True)
chunk = ("flood " + "." * 1017 + "\\n") * 1024
end = time.monotonic() + 20
while time.monotonic() < end:
    sys.stdout.write(chunk)
    sys.stdout.flush()
    time.sleep(0.5)
print("flood done", flush=True)
n = 0
while True:
    n += 1
    print("alive", n, flush=True)
    time.sleep(0.3)
"""


def test_a_flood_while_shipping_stops_leaves_a_bound_on_disk_and_an_l10_line(
        platform: Platform, tmp_path: Path) -> None:
    deploy(platform, tmp_path, "flooder")
    platform.paas("run", "--detach", "-a", "flooder", "--",
                  "exec /usr/bin/python3 -c " + shlex.quote(FLOOD))
    dyno = dyno_of(platform, "flooder", "run.1")
    text = eventually(lambda: "app[run.1]: ftruncate of stdout" in (
        t := logs(platform, "flooder", "--ps", "run.1")) and t, what="the flood started")
    on_disk = platform.home / "dynos" / dyno["id"] / "output.log"
    assert "app[run.1]: fallocate of stdout refused" in text, text
    assert "app[run.1]: ftruncate of stdout refused" in text, text

    platform.stop_control_plane()  # shipping stops; the dyno floods 2 MB/s for 20 s
    try:
        biggest = 0
        for _ in range(50):
            biggest = max(biggest, on_disk.stat().st_size, on_disk.stat().st_blocks * 512)
            time.sleep(0.5)
    finally:
        platform.up()
        wait_for_api(platform)
    assert biggest <= LOG_MAX + UNSHIPPED_MAX + 512 * 1024, biggest

    def truncated() -> str | None:
        text = logs(platform, "flooder", "--ps", "run.1")
        return text if "Error L10" in text and "alive" in text.split("Error L10")[-1] else None

    text = eventually(truncated, timeout=90, what="an L10 line, then the dyno's output again")
    # Faster than shipping, the flood lost output while the agent ran too; the most at once
    # while it was away.
    dropped = [int(n) for n in re.findall(r"paas\[run\.1\]: Error L10 \(Log truncated\): "
                                          r"(\d+) bytes of output dropped", text)]
    assert max(dropped) > 5 * MB, dropped
    assert on_disk.stat().st_size <= LOG_MAX + UNSHIPPED_MAX + 512 * 1024
    platform.paas("ps:stop", "run.1", "-a", "flooder")


PLANT = """set -u
for name in output.log shipped shipped.tmp exit-code exit-code.tmp agent.json agent.json.tmp \
    metadata.json metadata.json.tmp monitor.pid monitor.pid.tmp config.json init.pid disk \
    upper work app rootfs l0 l1 l2; do
  for dir in /app /tmp /dev/shm; do
    ln -sfn "$CANARY" "$dir/$name"
    ln -sfn "$CANARY_DIR" "$dir/$name.d"
  done
done
rm -rf /app/.layers /app/worker.py && ln -s "$CANARY_DIR" /app/.layers
ln -s "$CANARY" /app/worker.py
echo planted
"""
PLANTERS = ("web: exec /usr/bin/python3 server.py\n"
            "planter: sh plant.sh; exec sleep 600\n"
            "crasher: sh plant.sh; exit 1\n")


def canary_state(canary: Path) -> tuple[bytes, int, int, int, list[str]]:
    info = canary.lstat()
    return (canary.read_bytes(), info.st_mode, info.st_uid, info.st_mtime_ns,
            sorted(os.listdir(canary.parent)) + sorted(os.listdir(canary.parent / "dir")))


def test_symlinks_a_dyno_plants_are_never_followed(platform: Platform, tmp_path: Path) -> None:
    home = Path(f"/tmp/paas-canary-{uuid.uuid4().hex}")  # outside PAAS_HOME, root's
    (home / "dir").mkdir(parents=True)
    canary = home / "canary"
    canary.write_text("canary\n")
    canary.chmod(0o644)
    repo = app_repo(tmp_path, "dynos")
    (repo / "plant.sh").write_text(PLANT)
    (repo / "Procfile").write_text(PLANTERS)
    commit_all(repo, "planters")
    try:
        before = canary_state(canary)
        platform.paas("apps:create", "planter")
        platform.paas("config:set", f"CANARY={canary}", f"CANARY_DIR={home / 'dir'}",
                      "-a", "planter")
        pushed = git(repo, "push", platform.remote_url("planter"), "main", check=False)
        assert pushed.returncode == 0, pushed.stderr
        platform.paas("ps:scale", "planter=1", "crasher=1", "-a", "planter")
        eventually(lambda: "planted" in logs(platform, "planter", "--ps", "planter.1")
                   and logs(platform, "planter", "--ps", "crasher.1").count("planted") >= 2,
                   what="symlinks planted, a crashed dyno replaced",
                   explain=lambda: logs(platform, "planter"))
        platform.paas("ps:restart", "planter", "-a", "planter")
        eventually(lambda: logs(platform, "planter", "--ps", "planter.1").count("planted") >= 2,
                   what="the planter restarted")
        platform.paas("ps:scale", "planter=0", "crasher=0", "-a", "planter")
        eventually(lambda: not [d for d in ps(platform, "planter") if d["type"] != "web"],
                   what="the planters removed")
        platform.paas("apps:destroy", "planter", "--confirm", "planter")
        eventually(lambda: not list((platform.home / "dynos").glob("planter-*")),
                   what="the app's dynos gone")
        assert canary_state(canary) == before
    finally:
        shutil.rmtree(home)


def test_mount_paths_inside_a_dyno_name_nothing_of_the_host(platform: Platform,
                                                            tmp_path: Path) -> None:
    deploy(platform, tmp_path / "a", "mounts")
    deploy(platform, tmp_path / "b", "mounts-other")
    platform.wait_for("mounts-other", "hello from web.1 v1")
    shown = platform.paas("run", "-a", "mounts", "--",
                          "cat /proc/self/mountinfo; readlink /proc/self/fd/0 /proc/self/fd/1 "
                          "/proc/self/fd/2; id -u").stdout
    lines = shown.splitlines()
    own_uid = lines[-1]
    records = [json.loads(p.read_text()) for p in (platform.home / "dynos").glob("*/metadata.json")]
    others = {(r["app"], str(r["uid"])) for r in records if r["app"] != "mounts"}
    digests = [p.name for p in (platform.home / "layers" / "blobs" / "sha256").iterdir()]
    assert "mounts-other" in {app for app, _ in others}, records

    # Positive controls: the mounts are there, and the host's own view names PAAS_HOME.
    assert re.search(r" /app rw,.* - overlay overlay .*lowerdir=", shown), shown
    assert re.search(r" / ro,.* - tmpfs ", shown), shown
    assert str(platform.home) in Path("/proc/self/mountinfo").read_text()
    assert str(platform.home.resolve()) not in shown and str(platform.home) not in shown, shown
    assert "sha256" not in shown and not [d for d in digests if d[:12] in shown], shown
    mount_lines = [line for line in lines if " - " in line]
    for app, uid in others:
        assert app not in shown, (app, shown)
        assert not [line for line in mount_lines if re.search(rf"\b{uid}\b", line)], uid
    assert not [line for line in mount_lines if re.search(rf"\b{own_uid}\b", line)], own_uid
    assert "output.log" not in shown and "pipe:" in shown, shown
