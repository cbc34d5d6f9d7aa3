"""Faults injected into a running platform of its own (short heartbeats): build workers
SIGKILLed or hung mid-build, Redis and nginx killed, the API restarted during a push, a full disk,
a host "reboot". Each asserts what a user sees: one outcome per push, no second release, no
build container left behind, and the app serving throughout."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.gate import BuildGate
from tests.platform import PAAS, Platform, app_repo, commit_all, git, second_subnet

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def faulty() -> Iterator[Platform]:
    """A platform of this module's own, on the second test subnet (the session's platform may
    be running beside it), with a short build heartbeat: a killed worker must be started again
    by `paas up` (1 s), boot, deliver its build again and take the build's lease over before
    the reaper fails the build (a whole lease lifetime after the lease expired, 3 heartbeats);
    at 1 s a loaded 2-core host left too little of that for a worker's boot."""
    subnet = second_subnet()
    platform = Platform.create(PAAS_BUILD_HEARTBEAT="2", PAAS_DYNO_SUBNET=subnet)
    try:
        platform.up()
        yield platform
    finally:
        platform.down()


# ---- processes -------------------------------------------------------------------------


def argv(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def ppid(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def build_runner(platform: Platform) -> int | None:
    """The pid of `runc run` for one of this platform's build containers."""
    root = str(platform.home / "runc")
    for pid in pids():
        args = argv(pid)
        if root in args and "run" in args and args[-1].startswith("build-"):
            return pid
    return None


def children(pid: int) -> list[int]:
    found = []
    for child in pids():
        try:
            if ppid(child) == pid:
                found.append(child)
        except (OSError, IndexError):
            continue
    return found


def build_containers(platform: Platform) -> list[str]:
    result = subprocess.run(["runc", "--root", str(platform.home / "runc"), "list", "-q"],
                            capture_output=True, text=True, check=False)
    return [line for line in result.stdout.split() if line.startswith("build-")]


def eventually(check: Callable[[], object], timeout: float = 60, what: str = "") -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"never happened: {what or check}")


# ---- pushes ----------------------------------------------------------------------------


def gated_app(platform: Platform, tmp: Path, name: str) -> tuple[Path, BuildGate]:
    """A deployed slow-build app (v1 serves "slow-build is up"), and a gate its next build
    waits on until the test opens it."""
    platform.paas("apps:create", name)
    repo = app_repo(tmp, "slow-build")
    pushed = git(repo, "push", platform.remote_url(name), "main", check=False)
    assert pushed.returncode == 0, pushed.stderr
    platform.wait_for(name, "slow-build is up")
    gate = BuildGate(platform.home)
    platform.paas("config:set", f"PAAS_TEST_GATE_PORT={gate.port}", "-a", name)
    (repo / "index.html").write_text("<p>version two</p>\n")
    commit_all(repo, "version two")
    return repo, gate


@contextmanager
def pushing(platform: Platform, repo: Path, app: str) -> Iterator[subprocess.Popen]:
    env = {"GIT_TERMINAL_PROMPT": "0", "PATH": "/usr/bin:/bin", "HOME": str(repo.parent)}
    with subprocess.Popen(["git", "push", platform.remote_url(app), "main"], cwd=repo,
                          stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                          env=env) as process:
        try:
            yield process
        finally:
            if process.poll() is None:
                process.kill()


def read_until(process: subprocess.Popen, text: str) -> str:
    assert process.stderr is not None
    seen = []
    for line in process.stderr:
        seen.append(line)
        if text in line:
            return "".join(seen)
    raise AssertionError(f"the push never said {text!r}:\n{''.join(seen)}")


def builds_of(platform: Platform, app: str) -> list[dict]:
    return json.loads(platform.paas("builds", "-a", app, "--json").stdout)


def releases_of(platform: Platform, app: str) -> list[dict]:
    return json.loads(platform.paas("releases", "-a", app, "--json").stdout)


def remote_head(platform: Platform, repo: Path, app: str) -> str:
    return git(repo, "ls-remote", platform.remote_url(app), "main").stdout.split()[0]


def assert_one_outcome(platform: Platform, app: str) -> dict:
    """The newest build is terminal, and released at most once."""
    build = builds_of(platform, app)[0]
    assert build["status"] in ("succeeded", "failed"), build
    released = [r for r in releases_of(platform, app) if r["commit"] == build["commit"]]
    assert len(released) == (1 if build["status"] == "succeeded" else 0), released
    return build


# ---- the build worker killed -----------------------------------------------------------


def build_worker(platform: Platform) -> int:
    """The Celery worker running this platform's build: one process, builds in its threads,
    which also hosts the agent and the router (`python -m paas.roles`, the `node` service)."""
    runner = eventually(lambda: build_runner(platform), what="a build container")
    worker = ppid(runner)
    assert "paas.roles" in " ".join(argv(worker)) and "worker" in argv(worker)
    return worker


def test_a_build_whose_worker_is_killed_is_built_again_and_released_once(
        faulty: Platform, tmp_path: Path) -> None:
    repo, gate = gated_app(faulty, tmp_path, "kill-worker")
    with gate, pushing(faulty, repo, "kill-worker") as push:
        read_until(push, "Waiting for the test")
        os.kill(build_worker(faulty), signal.SIGKILL)

        # `paas up` starts the worker again, which delivers the build again at once
        again = read_until(push, "Waiting for the test")
        assert "Building again: the worker that started this build was lost" in again
        assert "slow-build is up" in faulty.get("kill-worker").text
        gate.open()
        assert push.stderr is not None
        rest = push.stderr.read()
        assert push.wait(120) == 0, again + rest
    assert "Released v3" in rest
    faulty.wait_for("kill-worker", "version two")
    assert assert_one_outcome(faulty, "kill-worker")["status"] == "succeeded"
    assert [r["version"] for r in releases_of(faulty, "kill-worker")] == [3, 2, 1]
    assert remote_head(faulty, repo, "kill-worker") == git(repo, "rev-parse", "HEAD").stdout.strip()
    # the restarted worker removed the dead one's build container
    eventually(lambda: not build_containers(faulty), what="no build container left")


def test_a_build_whose_worker_hangs_fails_with_a_message_and_is_not_released_later(
        faulty: Platform, tmp_path: Path) -> None:
    repo, gate = gated_app(faulty, tmp_path, "hung-worker")
    before = remote_head(faulty, repo, "hung-worker")
    with gate, pushing(faulty, repo, "hung-worker") as push:
        read_until(push, "Waiting for the test")
        worker = build_worker(faulty)
        os.kill(worker, signal.SIGSTOP)  # no exit, so `paas up` does not restart it
        try:
            assert push.stderr is not None
            rest = push.stderr.read()
            assert push.wait(120) != 0
        finally:
            os.kill(worker, signal.SIGCONT)
        gate.open()  # the woken worker finishes the build the reaper failed
        eventually(lambda: not build_containers(faulty), what="the late build's end")
    assert "the build worker stopped answering" in rest
    assert "! [remote rejected] main -> main" in rest
    assert "slow-build is up" in faulty.get("hung-worker").text
    assert remote_head(faulty, repo, "hung-worker") == before
    assert assert_one_outcome(faulty, "hung-worker")["status"] == "failed"
    assert [r["version"] for r in releases_of(faulty, "hung-worker")] == [2, 1]

    faulty.paas("config:unset", "PAAS_TEST_GATE_PORT", "-a", "hung-worker")
    retried = git(repo, "push", faulty.remote_url("hung-worker"), "main", check=False)
    assert retried.returncode == 0, retried.stderr
    faulty.wait_for("hung-worker", "version two")


def test_a_worker_killed_as_the_build_finishes_leaves_one_outcome(
        faulty: Platform, tmp_path: Path) -> None:
    repo, gate = gated_app(faulty, tmp_path, "kill-late")
    with gate, pushing(faulty, repo, "kill-late") as push:
        read_until(push, "Waiting for the test")
        worker = build_worker(faulty)
        gate.open()
        read_until(push, "the gate on port")
        os.kill(worker, signal.SIGKILL)  # storing layers, reporting, or just done
        assert push.stderr is not None
        rest = push.stderr.read()
        code = push.wait(120)
    build = assert_one_outcome(faulty, "kill-late")
    versions = [r["version"] for r in releases_of(faulty, "kill-late")]
    head = remote_head(faulty, repo, "kill-late")
    if build["status"] == "succeeded":
        assert versions == [3, 2, 1]
        faulty.wait_for("kill-late", "version two")
        assert head == git(repo, "rev-parse", "HEAD").stdout.strip()
    else:
        assert code != 0, rest
        assert versions == [2, 1]
        assert "slow-build is up" in faulty.get("kill-late").text
        assert head == git(repo, "rev-parse", "HEAD~1").stdout.strip()
    eventually(lambda: not build_containers(faulty), what="no build container left")


# ---- Redis, nginx and the API killed ---------------------------------------------------


def service_pid(platform: Platform, marker: str) -> int | None:
    """The pid of the supervisor's child whose command line holds `marker`."""
    assert platform.process is not None
    for pid in children(platform.process.pid):
        if marker in " ".join(argv(pid)):
            return pid
    return None


def restart_service(platform: Platform, marker: str) -> None:
    """SIGKILLs a platform service and waits until `paas up` has started it again."""
    old = service_pid(platform, marker)
    assert old is not None, f"no {marker} process"
    os.kill(old, signal.SIGKILL)
    eventually(lambda: (service_pid(platform, marker) or old) != old, what=f"{marker} back")


class Tail:
    """`paas logs --tail` running in the background, its lines collected."""

    def __init__(self, platform: Platform, app: str) -> None:
        self.process = subprocess.Popen([PAAS, "logs", "--tail", "-a", app],
                                        env=platform.env, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    def close(self) -> None:
        self.process.kill()
        self.process.wait()
        self.reader.join(10)
        assert self.process.stdout is not None
        self.process.stdout.close()


def test_redis_restarted_during_a_build_and_a_log_tail(faulty: Platform, tmp_path: Path) -> None:
    repo, gate = gated_app(faulty, tmp_path, "redis-crash")
    tail = Tail(faulty, "redis-crash")
    try:
        with gate, pushing(faulty, repo, "redis-crash") as push:
            read_until(push, "Waiting for the test")
            restart_service(faulty, "redis-server")
            assert "slow-build is up" in faulty.get("redis-crash").text
            gate.open()
            assert push.stderr is not None
            rest = push.stderr.read()
            code = push.wait(120)
        # Celery's worker may exit on a lost broker connection (`paas up` restarts it): the
        # build then fails with the reaper's message instead of finishing. Never both.
        build = assert_one_outcome(faulty, "redis-crash")
        if build["status"] == "succeeded":
            assert code == 0, rest
            faulty.wait_for("redis-crash", "version two")
            assert [r["version"] for r in releases_of(faulty, "redis-crash")] == [3, 2, 1]
        else:
            assert code != 0 and "the build worker stopped answering" in rest, rest
            assert [r["version"] for r in releases_of(faulty, "redis-crash")] == [2, 1]
            assert "slow-build is up" in faulty.get("redis-crash").text
        assert "PAAS_TEST_GATE_PORT" in faulty.paas("config", "-a", "redis-crash").stdout

        faulty.get("redis-crash", "/?after-the-redis-restart")
        eventually(lambda: any("after-the-redis-restart" in line for line in tail.lines),
                   what="the tail shows a request made after the restart")
        assert tail.process.poll() is None
    finally:
        tail.close()


def test_nginx_killed_is_restarted_by_the_router(faulty: Platform, tmp_path: Path) -> None:
    faulty.paas("apps:create", "nginx-crash")
    repo = app_repo(tmp_path, "procfile-only")
    assert git(repo, "push", faulty.remote_url("nginx-crash"), "main",
               check=False).returncode == 0
    faulty.wait_for("nginx-crash", "Procfile-only app")
    master = int((faulty.home / "router" / "nginx.pid").read_text())
    for pid in [master, *children(master)]:
        os.kill(pid, signal.SIGKILL)

    faulty.wait_for("nginx-crash", "Procfile-only app")
    assert int((faulty.home / "router" / "nginx.pid").read_text()) != master


def up_dynos(platform: Platform, app: str) -> list[dict]:
    dynos = json.loads(platform.paas("ps", "-a", app, "--json").stdout)
    return [d for d in dynos if d["state"] == "up"]


def test_the_agent_killed_with_ten_dynos_running(faulty: Platform, tmp_path: Path) -> None:
    faulty.paas("apps:create", "agent-crash")
    repo = app_repo(tmp_path, "procfile-only")
    assert git(repo, "push", faulty.remote_url("agent-crash"), "main",
               check=False).returncode == 0
    faulty.paas("ps:scale", "web=10", "-a", "agent-crash")
    eventually(lambda: len(up_dynos(faulty, "agent-crash")) == 10, what="10 web dynos up")
    before = {d["name"]: (d["id"], d["restarts"]) for d in up_dynos(faulty, "agent-crash")}
    failures: list[str] = []
    sent = 0
    stop = threading.Event()

    def visit() -> None:
        nonlocal sent
        while not stop.is_set():
            try:
                sent += 1
                if faulty.get("agent-crash").status_code != 200:
                    failures.append("status")
            except httpx.HTTPError as error:
                failures.append(repr(error))
            time.sleep(0.02)

    visitor = threading.Thread(target=visit, daemon=True)
    visitor.start()
    marker = f"/agent-down-{uuid.uuid4().hex}"
    try:
        old = service_pid(faulty, "paas.roles")
        assert old is not None
        os.kill(old, signal.SIGKILL)
        assert faulty.get("agent-crash", marker).status_code == 404  # http.server logs it
        assert service_pid(faulty, "paas.roles") is None  # printed with no agent
        eventually(lambda: service_pid(faulty, "paas.roles"), what="agent back")
        eventually(lambda: marker in faulty.paas("logs", "-a", "agent-crash", "-s", "app",
                                                 "-n", "1000").stdout,
                   what="the dyno's line from while the agent was down")
        time.sleep(3)  # a few reconcile rounds of the new agent
    finally:
        stop.set()
        visitor.join(30)
    after = {d["name"]: (d["id"], d["restarts"]) for d in up_dynos(faulty, "agent-crash")}
    assert after == before and {r for _, r in after.values()} == {0}
    assert failures == [] and sent > 20


def test_the_api_restarted_during_a_push(faulty: Platform, tmp_path: Path) -> None:
    repo, gate = gated_app(faulty, tmp_path, "api-crash")
    with gate, pushing(faulty, repo, "api-crash") as push:
        read_until(push, "Waiting for the test")
        restart_service(faulty, "paas.api")
        assert push.stderr is not None
        rest = push.stderr.read()
        assert push.wait(120) != 0, rest  # the pusher sees its connection go
        eventually(lambda: faulty.paas("apps", check=False).returncode == 0, what="the API")
        gate.open()
        # the build goes on without its pusher, and the release moves the ref
        faulty.wait_for("api-crash", "version two")
    assert assert_one_outcome(faulty, "api-crash")["status"] == "succeeded"
    assert remote_head(faulty, repo, "api-crash") == git(repo, "rev-parse", "HEAD").stdout.strip()
    newest = releases_of(faulty, "api-crash")[0]
    assert (newest["version"], newest["current"]) == (3, True)

    faulty.paas("config:unset", "PAAS_TEST_GATE_PORT", "-a", "api-crash")
    (repo / "index.html").write_text("<p>version three</p>\n")
    commit_all(repo, "version three")
    retried = git(repo, "push", faulty.remote_url("api-crash"), "main", check=False)
    assert retried.returncode == 0, retried.stderr
    faulty.wait_for("api-crash", "version three")


# ---- a full disk, a host reboot --------------------------------------------------------


@contextmanager
def full_layer_store(platform: Platform, tmp: Path) -> Iterator[Path]:
    """$PAAS_HOME/layers moved onto a small tmpfs holding a copy of it, filled to the last
    byte; unmounted at the end (the layers underneath never changed)."""
    layers = platform.home / "layers"
    used = int(subprocess.run(["du", "-sk", str(layers)], capture_output=True, text=True,
                              check=True).stdout.split()[0])
    staging = tmp / "tmpfs"
    staging.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={used + 2048}k,mode=0755", "tmpfs",
                    str(staging)], check=True)
    try:
        subprocess.run(["cp", "-a", f"{layers}/.", str(staging)], check=True)
        subprocess.run(["mount", "--move", str(staging), str(layers)], check=True)
    except BaseException:
        subprocess.run(["umount", str(staging)], check=False)
        raise
    try:
        try:
            with (layers / "filler").open("wb") as filler:
                while True:
                    filler.write(b"\0" * 65536)
                    filler.flush()
        except OSError as error:  # full: where the test wants it (maybe the copy filled it)
            if error.errno != errno.ENOSPC:
                raise
        yield layers
    finally:
        if subprocess.run(["umount", str(layers)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(layers)], check=True)


def corrupt_layers(layers: Path) -> list[str]:
    """Half-written files, and blobs whose content does not match their digest."""
    bad = [str(p) for p in layers.rglob(".tmp-*")]
    blobs = layers / "blobs" / "sha256"
    for blob in blobs.iterdir() if blobs.is_dir() else []:
        digest = subprocess.run(["sha256sum", str(blob)], capture_output=True, text=True,
                                check=True).stdout.split()[0]
        if digest != blob.name:
            bad.append(str(blob))
    return bad


def test_a_full_disk_fails_the_build_with_a_message_and_corrupts_nothing(
        faulty: Platform, tmp_path: Path) -> None:
    faulty.paas("apps:create", "disk-full")
    repo = app_repo(tmp_path, "procfile-only")
    assert git(repo, "push", faulty.remote_url("disk-full"), "main",
               check=False).returncode == 0
    faulty.wait_for("disk-full", "Procfile-only app")
    (repo / "big.txt").write_text("this layer will not fit\n" * 200_000)
    commit_all(repo, "a bigger app")

    with full_layer_store(faulty, tmp_path) as layers:
        result = git(repo, "push", faulty.remote_url("disk-full"), "main", check=False)
        assert result.returncode != 0
        assert "the platform's disk is full" in result.stderr
        assert "Procfile-only app" in faulty.get("disk-full").text
        assert corrupt_layers(layers) == []
    assert assert_one_outcome(faulty, "disk-full")["status"] == "failed"

    retried = git(repo, "push", faulty.remote_url("disk-full"), "main", check=False)
    assert retried.returncode == 0, retried.stderr
    faulty.wait_for("disk-full", "Procfile-only app")
    assert corrupt_layers(faulty.home / "layers") == []


def test_after_a_host_reboot_every_app_comes_back(faulty: Platform, tmp_path: Path) -> None:
    faulty.paas("apps:create", "rebooted")
    repo = app_repo(tmp_path, "procfile-only")
    assert git(repo, "push", faulty.remote_url("rebooted"), "main", check=False).returncode == 0
    faulty.paas("ps:scale", "web=2", "-a", "rebooted")
    eventually(lambda: len(dynos_up(faulty, "rebooted")) == 2, what="two web dynos")
    apps = [a["name"] for a in json.loads(faulty.paas("apps", "--json").stdout)]
    before = {app: sorted(dynos_up(faulty, app)) for app in apps}
    pages = {app: faulty.get(app).text for app in apps if before[app]}

    faulty.stop_control_plane()
    faulty.paas("down")  # containers, network namespaces and mounts are gone, as after a reboot
    with pytest.raises(httpx.HTTPError):
        faulty.get("rebooted")
    faulty.up()

    for app, page in pages.items():
        faulty.wait_for(app, page)
    for app, names in before.items():
        eventually(lambda app=app, names=names: sorted(dynos_up(faulty, app)) == names,
                   what=f"{app}'s dynos {names} up again")


def dynos_up(platform: Platform, app: str) -> list[str]:
    dynos = json.loads(platform.paas("ps", "-a", app, "--json").stdout)
    return [d["name"] for d in dynos if d["state"] == "up"]
