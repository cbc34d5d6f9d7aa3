"""The platform's own services each run in a memory cgroup with the limit of its setting; one
that goes over it is OOM-killed there, `paas up` says why and restarts it, and nothing else is
hit: the other services keep their pids, dynos keep serving, the API answers again.

The request that takes the API over its (low, for the test) limit is a real one: a clone over
HTTP of a repository holding a large incompressible file (dulwich's upload-pack builds the
whole pack in the API's memory)."""

from __future__ import annotations

import hashlib
import os
import struct
import subprocess
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from paas.settings import Settings
from tests.gate import BuildGate
from tests.platform import Platform, app_repo, commit_all, git
from tests.services import children, service_pids

pytestmark = [pytest.mark.e2e, pytest.mark.serial]  # memory measurements: alone

MEMORY = Path("/sys/fs/cgroup/memory")
API_LIMIT_MB = 320
BIG_FILE_MB = 200
# `node` hosts the worker, the agent and the router: the sum of their settings.
DEFAULT_LIMITS_MB = {"redis": 1024, "api": API_LIMIT_MB, "node": 1536 + 512 + 512}


@pytest.fixture(scope="module")
def tight() -> Iterator[Platform]:
    platform = Platform.create(PAAS_API_MEMORY_MB=str(API_LIMIT_MB))
    try:
        platform.up()
        yield platform
    finally:
        platform.down()


def services_cgroup(platform: Platform) -> Path:
    return MEMORY / f"paas-{Settings(home=platform.home).install_id}-services"


def memory_cgroup(pid: int) -> str:
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            return path
    raise AssertionError(f"{pid} has no memory cgroup")


def clone(platform: Platform, app: str, into: Path) -> bool:
    return git(into.parent, "clone", "-q", platform.remote_url(app), into.name,
               check=False).returncode == 0


def api_answers(platform: Platform) -> bool:
    try:
        return httpx.get(f"{platform.api_url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def deploy(platform: Platform, tmp_path: Path, app: str, big_file_mb: int = 0) -> None:
    platform.paas("apps:create", app)
    repo = app_repo(tmp_path / app, "procfile-only")
    if big_file_mb:
        with (repo / "noise.bin").open("wb") as f:
            for _ in range(big_file_mb):
                f.write(os.urandom(1 << 20))
        commit_all(repo, "incompressible")
    git(repo, "push", "-q", platform.remote_url(app), "main")
    platform.wait_for(app, "Hello from a Procfile-only app")


def test_each_service_is_in_its_own_memory_cgroup_and_dynos_are_not(
        tight: Platform, tmp_path: Path) -> None:
    root = services_cgroup(tight)
    pids = service_pids(tight)
    assert set(pids) == set(DEFAULT_LIMITS_MB)
    for name, pid in pids.items():
        group = root / name
        assert memory_cgroup(pid) == f"/{group.relative_to(MEMORY)}", name
        limit = int((group / "memory.limit_in_bytes").read_text())
        assert limit == DEFAULT_LIMITS_MB[name] << 20, name

    deploy(tight, tmp_path, "calm")
    # A dyno's monitor starts outside the agent's cgroup: its memory is never charged there.
    dynos_dir = Settings(home=tight.home).dynos_dir
    monitors = [int((d / "monitor.pid").read_text()) for d in dynos_dir.iterdir()
                if (d / "monitor.pid").exists()]
    assert monitors
    assert {memory_cgroup(pid) for pid in monitors} == {memory_cgroup(os.getpid())}
    time.sleep(1.5)  # `paas up` sends detached processes home every 0.5 s
    for name in ("node",):
        group = root / name
        members = {int(p) for p in (group / "cgroup.procs").read_text().split()}
        strangers = members - {pids[name], *_tree(pids[name])}
        assert not strangers, f"{name}'s cgroup holds {strangers}"


def full_log(platform: Platform) -> str:
    return platform.log_path.read_text(errors="replace")


def oom_killed_services(platform: Platform) -> set[str]:
    """The services `paas up` said were OOM-killed ("paas | api: 1 process(es) OOM-killed")."""
    lines = [line.split("|", 1)[1].split() for line in full_log(platform).splitlines()
             if line.startswith("paas ") and "OOM-killed" in line]
    return {words[0].rstrip(":") for words in lines}


def _tree(pid: int) -> list[int]:
    found = []
    for child in children(pid):
        found += [child, *_tree(child)]
    return found


def test_an_api_over_its_limit_is_oom_killed_restarted_and_nothing_else_is_hit(
        tight: Platform, tmp_path: Path) -> None:
    deploy(tight, tmp_path, "small")
    assert clone(tight, "small", tmp_path / "small-before")  # positive control
    deploy(tight, tmp_path, "noisy", big_file_mb=BIG_FILE_MB)
    before = service_pids(tight)
    log_start = len(full_log(tight))

    assert not clone(tight, "noisy", tmp_path / "noisy-clone")

    expected = (f"api was OOM-killed: it went over its memory limit of {API_LIMIT_MB} MB "
                "(PAAS_API_MEMORY_MB); restarting")
    deadline = time.monotonic() + 60
    while expected not in full_log(tight)[log_start:] or not api_answers(tight):
        assert time.monotonic() < deadline, tight.output()[-4000:]
        time.sleep(0.3)
    after = service_pids(tight)
    assert after["api"] != before["api"]
    assert {k: v for k, v in after.items() if k != "api"} == {
        k: v for k, v in before.items() if k != "api"}
    assert oom_killed_services(tight) == {"api"}
    tight.wait_for("small", "Hello from a Procfile-only app")
    assert clone(tight, "small", tmp_path / "small-after")


def _object_header(kind: int, size: int) -> bytes:
    out, byte, size = [], (kind << 4) | (size & 0x0F), size >> 4
    while size:
        out.append(byte | 0x80)
        byte, size = size & 0x7F, size >> 7
    return bytes([*out, byte])


def _varint(n: int) -> bytes:
    out = []
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def delta_bomb(target_mb: int) -> bytes:
    """A pack of a 1 MiB blob of zeros and a delta against it that copies it `target_mb`
    times: a few kB on the wire, `target_mb` MiB once git resolves it."""
    base = b"\0" * (1 << 20)
    copy_one_mib = bytes([0x80 | 0x40, 0x10])  # copy: offset 0, size 0x100000
    delta = _varint(len(base)) + _varint(target_mb << 20) + copy_one_mib * target_mb
    blob = _object_header(3, len(base)) + zlib.compress(base)
    ofs_delta = _object_header(6, len(delta)) + _varint_offset(len(blob)) + zlib.compress(delta)
    body = b"PACK" + struct.pack(">II", 2, 2) + blob + ofs_delta
    return body + hashlib.sha1(body).digest()


def _varint_offset(n: int) -> bytes:
    """The OFS_DELTA distance back to the base, in git's offset encoding."""
    out = [n & 0x7F]
    n >>= 7
    while n:
        n -= 1
        out.insert(0, 0x80 | (n & 0x7F))
        n >>= 7
    return bytes(out)


def test_a_pack_that_unpacks_past_the_api_limit_costs_the_push_not_the_api(
        tight: Platform) -> None:
    tight.paas("apps:create", "bomb")
    before = service_pids(tight)
    command = f"{'0' * 40} {'1' * 40} refs/heads/main\0report-status side-band-64k\n".encode()
    body = b"%04x" % (len(command) + 4) + command + b"0000" + delta_bomb(API_LIMIT_MB * 2)
    response = httpx.post(f"{tight.api_url}/git/bomb.git/git-receive-pack", content=body,
                          auth=("paas", tight.token), timeout=120,
                          headers={"Content-Type": "application/x-git-receive-pack-request"})
    assert response.status_code == 200
    assert b"needs more memory to unpack than the git receiver may use (PAAS_API_MEMORY_MB)" \
        in response.content, response.content[-2000:]
    assert service_pids(tight) == before  # the API itself was not the one killed
    assert api_answers(tight)
    deadline = time.monotonic() + 10  # `paas up` reads the OOM-kill counts every 0.5 s
    while "api: 1 process(es) OOM-killed" not in full_log(tight):
        assert time.monotonic() < deadline, full_log(tight)[-3000:]
        time.sleep(0.2)


def test_a_running_build_is_not_charged_to_the_worker(tight: Platform, tmp_path: Path) -> None:
    tight.paas("apps:create", "gated")
    gate = BuildGate(tight.home)
    tight.paas("config:set", f"PAAS_TEST_GATE_PORT={gate.port}", "-a", "gated")
    repo = app_repo(tmp_path, "slow-build")
    worker = services_cgroup(tight) / "node"  # the worker's host
    builds = MEMORY / f"paas-{Settings(home=tight.home).install_id}"
    with gate:
        push = subprocess.Popen(["git", "push", tight.remote_url("gated"), "main"], cwd=repo,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 120
            while not (in_build := [pid for group in builds.glob("build-*")
                                    for pid in _procs(group)]):
                assert time.monotonic() < deadline, "no build container ever ran"
                time.sleep(0.2)
            time.sleep(1.5)  # `paas up` sends detached processes home every 0.5 s
            in_worker = set(_procs(worker))
            assert in_worker and not in_worker & set(in_build)
            runners = [pid for pid in in_worker if " run --keep " in _argv(pid)]
            assert not runners, f"`runc run` of the build is in the worker's cgroup: {runners}"
            gate.open()
            assert push.wait(180) == 0
        finally:
            if push.poll() is None:
                push.kill()
                push.wait()


def _procs(cgroup: Path) -> list[int]:
    try:
        return [int(pid) for pid in (cgroup / "cgroup.procs").read_text().split()]
    except OSError:
        return []


def _argv(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def test_paas_up_removes_the_service_cgroups_when_it_stops(tight: Platform) -> None:
    root = services_cgroup(tight)
    assert root.is_dir()
    tight.stop_control_plane()
    assert not root.exists(), [p.name for p in root.iterdir() if p.is_dir()]


def test_paas_down_removes_the_cgroups_of_a_killed_paas_up(tight: Platform) -> None:
    root = services_cgroup(tight)
    tight.up()
    assert tight.process is not None
    tight.process.kill()
    tight.process.wait(10)
    assert root.is_dir()
    tight.paas("down")
    assert not root.exists(), [p.name for p in root.iterdir() if p.is_dir()]
