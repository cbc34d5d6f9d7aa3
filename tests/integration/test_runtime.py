"""The container runtime against real runc, overlayfs and network namespaces (root only)."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from paas.builder import tools
from paas.runtime import BuildContainerSpec, DynoSpec, DynoStatus, Runtime, firewall, native
from paas.runtime.dynolog import DROPPED, DynoLog, dropped_count
from paas.runtime.host import mounts_under
from paas.runtime.hostconfig import PIP_CONFIGS, client_config, passthrough_env
from paas.runtime.network import app_network, links_with_prefix, netns_name, netns_with_prefix
from paas.settings import Settings
from tests.platform import free_subnet

UID = 10001
APP_INDEX = 7
SUBNET = free_subnet()
APP_NET = app_network(SUBNET, APP_INDEX)
PROBE = """\
echo "uid=$(id -u)"
echo "pid1=$(tr '\\0' ' ' </proc/1/cmdline)"
grep -E '^(CapEff|NoNewPrivs)' /proc/self/status
for p in "$PROBE_PATH" /root /home; do
  if [ -e "$p" ]; then echo "visible $p"; else echo "hidden $p"; fi
done
unshare -U true 2>/dev/null && echo userns-allowed || echo userns-blocked
echo "routes:"; ip route
echo "probe done"
exit 7
"""


@dataclass
class Env:
    runtime: Runtime
    settings: Settings
    base: Path
    layer: Path


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    base = Path(tempfile.mkdtemp(prefix="paas-rt-", dir="/tmp"))
    base.chmod(0o755)
    layer = base / "layer"
    layer.mkdir(mode=0o755)
    (layer / "probe.sh").write_text(PROBE)
    (layer / "probe.sh").chmod(0o644)
    settings = Settings(home=base / "home", dyno_subnet=SUBNET)
    runtime = Runtime(settings)
    try:
        yield Env(runtime, settings, base, layer)
    finally:
        runtime.teardown()
        iid = settings.install_id
        assert netns_with_prefix(f"p{iid}-") == []
        assert links_with_prefix(f"v{iid}") == []
        assert links_with_prefix(f"pb{iid}") == []
        assert mounts_under(base) == []
        assert not any(Path("/sys/fs/cgroup").glob(f"*/paas-{iid}"))
        assert firewall.Table(iid).sets() is None
        shutil.rmtree(base)


def dyno_spec(env: Env, dyno_id: str, command: list[str], **extra: object) -> DynoSpec:
    fields: dict[str, object] = {
        "id": dyno_id,
        "app": "demo",
        "app_index": APP_INDEX,
        "uid": UID,
        "command": command,
        "env": {"PROBE_PATH": str(env.settings.home)},
        "layers": [env.layer],
        "memory_mb": 128,
        "pids_limit": 64,
        "metadata": {"release": "v1"},
    }
    fields.update(extra)
    return DynoSpec(**fields)  # type: ignore[arg-type]


def status_of(runtime: Runtime, dyno_id: str) -> DynoStatus:
    return next(s for s in runtime.list_dynos() if s.id == dyno_id)


def wait_for(predicate: object, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_dyno_runs_isolated_and_records_its_exit(env: Env) -> None:
    status = env.runtime.start_dyno(dyno_spec(env, "probe", ["/bin/sh", "/app/probe.sh"]))
    assert ipaddress.ip_address(status.ip) in APP_NET
    wait_for(lambda: status_of(env.runtime, "probe").state == "exited")
    exited = status_of(env.runtime, "probe")
    assert exited.exit_code == 7
    assert exited.metadata == {"release": "v1"}
    out = exited.log_path.read_text()
    assert "probe done" in out
    assert f"uid={UID}" in out
    assert "pid1=/bin/sh /app/probe.sh" in out
    assert "CapEff:\t0000000000000000" in out
    assert "NoNewPrivs:\t1" in out
    assert f"hidden {env.settings.home}" in out
    assert "hidden /root" in out
    assert "hidden /home" in out
    assert "userns-blocked" in out
    routes = out.split("routes:")[1]
    assert f"{APP_NET} dev eth0" in routes
    assert "default" not in routes

    host = subprocess.run(
        ["/bin/sh", str(env.layer / "probe.sh")],
        env={**os.environ, "PROBE_PATH": str(env.settings.home)},
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    assert f"visible {env.settings.home}" in host
    assert "visible /root" in host
    assert "userns-allowed" in host
    env.runtime.remove_dyno("probe")
    assert not (env.settings.dynos_dir / "probe").exists()
    env.runtime.remove_dyno("probe")


def test_host_reaches_a_dyno_server_on_its_ip(env: Env) -> None:
    top = env.base / "top-layer"
    top.mkdir(mode=0o755)
    (top / "which.txt").write_text("top\n")
    (env.layer / "which.txt").write_text("bottom\n")
    for path in (top / "which.txt", env.layer / "which.txt"):
        path.chmod(0o644)
    port = env.settings.dyno_port  # the port the host's connections to a dyno go to
    command = ["/usr/bin/python3", "-m", "http.server", str(port)]
    status = env.runtime.start_dyno(dyno_spec(env, "web-1", command, layers=[top, env.layer]))
    assert status.state == "running"
    cgroup = f"paas-{env.settings.install_id}/web-1"
    limit = Path(f"/sys/fs/cgroup/memory/{cgroup}/memory.limit_in_bytes").read_text()
    assert int(limit) == 128 * 1024 * 1024
    assert Path(f"/sys/fs/cgroup/pids/{cgroup}/pids.max").read_text().strip() == "64"

    def serving() -> bool:
        with socket.socket() as sock:
            sock.settimeout(0.5)
            return sock.connect_ex((status.ip, port)) == 0

    wait_for(serving)
    with urllib.request.urlopen(f"http://{status.ip}:{port}/probe.sh", timeout=5) as response:
        assert response.read().decode() == PROBE
    with urllib.request.urlopen(f"http://{status.ip}:{port}/which.txt", timeout=5) as response:
        assert response.read() == b"top\n"
    # The dyno forgets the gateway's MAC (as when its neighbour entry expires) while the host
    # remembers the dyno's: answering the next connection needs the host to answer its ARP.
    netns = netns_name(env.settings.install_id, "web-1")
    subprocess.run(["ip", "-n", netns, "neigh", "flush", "all"], check=True)
    with urllib.request.urlopen(f"http://{status.ip}:{port}/which.txt", timeout=5) as response:
        assert response.read() == b"top\n"
    env.runtime.remove_dyno("web-1")
    assert "web-1" not in [s.id for s in env.runtime.list_dynos()]


def test_stop_sends_term_first_then_kill(env: Env) -> None:
    loop = "echo ready; while :; do sleep 0.2; done"
    specs = [
        dyno_spec(env, "polite", ["/bin/sh", "-c", f"trap 'echo got-term; exit 0' TERM; {loop}"]),
        dyno_spec(env, "stubborn", ["/bin/sh", "-c", f"trap '' TERM; {loop}"]),
    ]
    started: list[DynoStatus] = []
    threads = [
        threading.Thread(target=lambda s=s: started.append(env.runtime.start_dyno(s)))
        for s in specs
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({s.ip for s in started}) == 2
    for status in started:
        wait_for(lambda status=status: "ready" in status.log_path.read_text())

    assert env.runtime.stop_dyno("polite", grace=5) is False
    polite = status_of(env.runtime, "polite")
    assert (polite.state, polite.exit_code) == ("exited", 0)
    assert "got-term" in polite.log_path.read_text()

    begin = time.monotonic()
    assert env.runtime.stop_dyno("stubborn", grace=1) is True
    assert time.monotonic() - begin >= 1
    stubborn = status_of(env.runtime, "stubborn")
    assert (stubborn.state, stubborn.exit_code) == ("exited", 137)
    assert env.runtime.stop_dyno("stubborn", grace=1) is False
    env.runtime.remove_dyno("polite")
    env.runtime.remove_dyno("stubborn")


STARTER = """
import sys
from pathlib import Path
from paas.runtime import DynoSpec, Runtime
from paas.settings import Settings
settings = Settings(home=Path(sys.argv[1]), dyno_subnet=sys.argv[3])
Runtime(settings).start_dyno(DynoSpec(
    id="ticker", app="demo", app_index=7, uid=10001,
    command=["/bin/sh", "-c", "i=0; while :; do echo tick $i; i=$((i+1)); sleep 0.1; done"],
    env={}, layers=[Path(sys.argv[2])], memory_mb=64, pids_limit=32, metadata={"k": "v"},
))
"""


def test_a_new_process_adopts_a_dyno_that_outlives_its_starter(env: Env) -> None:
    subprocess.run(
        [sys.executable, "-c", STARTER, str(env.settings.home), str(env.layer), SUBNET],
        check=True,
        timeout=30,
    )
    adopted = status_of(Runtime(env.settings), "ticker")
    assert adopted.state == "running"
    assert adopted.metadata == {"k": "v"}
    size = adopted.log_path.stat().st_size
    wait_for(lambda: adopted.log_path.stat().st_size > size + 20)
    # What stays of the platform for the dyno is its monitor: runc has exited.
    wait_for(lambda: len(env.runtime.monitor_pids("ticker")) == 1)
    assert [command_of(pid) for pid in env.runtime.monitor_pids("ticker")] == [
        [str(native.DYNO_MONITOR), str(env.settings.dynos_dir / "ticker")]]
    assert Runtime(env.settings).stop_dyno("ticker", grace=0.5) is True
    assert status_of(env.runtime, "ticker").exit_code == 137
    env.runtime.remove_dyno("ticker")


def command_of(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:2]


def init_of(runtime: Runtime, dyno_id: str) -> int:
    return int(json.loads(runtime.runc.call("state", dyno_id).stdout)["pid"])


def test_a_dyno_reports_its_own_exit_code_or_the_signal_that_killed_it(env: Env) -> None:
    """runc exits once the container runs; the exit status is the container's own, as a
    shell reports it (128 + N for a signal), written after its last output."""
    exits = env.runtime.start_dyno(dyno_spec(
        env, "exits-3", ["/bin/sh", "-c", "echo ready; sleep 0.3; echo last words; exit 3"]))
    killed = env.runtime.start_dyno(dyno_spec(
        env, "killed", ["/bin/sh", "-c", "echo ready; exec sleep 600"]))
    # Its output closed long before it ends: the exit status still comes.
    env.runtime.start_dyno(dyno_spec(
        env, "mute", ["/bin/sh", "-c", "exec >/dev/null 2>&1; sleep 0.5; exit 5"]))
    missing = env.runtime.start_dyno(dyno_spec(env, "missing", ["/no/such/program"]))
    wait_for(lambda: "ready" in killed.log_path.read_text())
    os.kill(init_of(env.runtime, "killed"), signal.SIGKILL)
    dynos = ("exits-3", "killed", "mute", "missing")
    for dyno_id in dynos:
        wait_for(lambda dyno_id=dyno_id: status_of(env.runtime, dyno_id).state == "exited")
    assert status_of(env.runtime, "exits-3").exit_code == 3
    assert exits.log_path.read_text() == "ready\nlast words\n"
    assert status_of(env.runtime, "killed").exit_code == 128 + signal.SIGKILL
    assert status_of(env.runtime, "mute").exit_code == 5
    # A container that never started: runc's status, and its reason in the log.
    assert status_of(env.runtime, "missing").exit_code == 1
    assert "/no/such/program: no such file or directory" in missing.log_path.read_text()
    for dyno_id in dynos:
        env.runtime.remove_dyno(dyno_id)


UNSHIPPED_BOUND = 256 * 1024
FLOOD = 5_000_000  # bytes of "x", without a newline: every "x" in the log is the dyno's
FLOODER = f"python3 -c 'import os; os.write(1, b\"x\" * {FLOOD})'"


def accounted(log: bytes) -> int:
    """The flood's bytes the log holds, plus those its markers say were dropped."""
    dropped = [dropped_count(line) for line in log.decode(errors="replace").splitlines()]
    return log.count(b"x") + sum(count for count in dropped if count is not None)


def test_a_flood_past_the_unshipped_bound_is_dropped_and_counted(env: Env) -> None:
    runtime = Runtime(dataclasses.replace(env.settings,
                                          dyno_log_unshipped_max_bytes=UNSHIPPED_BOUND))
    status = runtime.start_dyno(dyno_spec(env, "flood", ["/bin/sh", "-c", FLOODER]))
    try:
        wait_for(lambda: status_of(runtime, "flood").state == "exited", timeout=60)
        assert status_of(runtime, "flood").exit_code == 0
        log = status.log_path.read_bytes()
        kept, marker, _ = log.partition(DROPPED)
        assert marker and kept.count(b"x") <= UNSHIPPED_BOUND
        assert accounted(log) == FLOOD
    finally:
        runtime.remove_dyno("flood")


def test_a_dropped_count_is_logged_once_the_agent_ships(env: Env) -> None:
    """Nothing shipped: the flood is cut at the bound. Once the agent has shipped it (the
    `shipped` offset), the quiet dyno's log gets the count of what was dropped."""
    runtime = Runtime(dataclasses.replace(env.settings,
                                          dyno_log_unshipped_max_bytes=UNSHIPPED_BOUND))
    status = runtime.start_dyno(dyno_spec(
        env, "flood-quiet", ["/bin/sh", "-c", f"{FLOODER}; exec sleep 600"]))
    try:
        init = init_of(runtime, "flood-quiet")
        wait_for(lambda: Path(f"/proc/{init}/cmdline").read_bytes().startswith(b"sleep"),
                 timeout=60)
        log = DynoLog(status.log_path)
        log.set_offset(status.log_path.stat().st_size)
        wait_for(lambda: DROPPED in status.log_path.read_bytes())
        assert accounted(status.log_path.read_bytes()) == FLOOD
    finally:
        runtime.remove_dyno("flood-quiet")


def build_spec(env: Env, build_id: str, script: str, **extra: object) -> BuildContainerSpec:
    workspace = env.base / f"ws-{build_id}"
    workspace.mkdir(exist_ok=True)
    fields: dict[str, object] = {
        "id": build_id,
        "uid": UID,
        "workspace": workspace,
        "ro_binds": [],
        "rw_binds": [],
        "command": ["/bin/sh", "-c", script],
        "env": {"GREETING": "hello"},
        "memory_mb": 256,
        "timeout": 20,
    }
    fields.update(extra)
    return BuildContainerSpec(**fields)  # type: ignore[arg-type]


def test_build_streams_lines_and_returns_the_exit_code(env: Env) -> None:
    seen: list[tuple[float, str]] = []
    script = 'echo "$GREETING one"; sleep 1; echo two >&2; exit 5'
    code = env.runtime.run_build(
        build_spec(env, "build-stream", script), lambda line: seen.append((time.monotonic(), line))
    )
    end = time.monotonic()
    assert code == 5
    assert [line for _, line in seen] == ["hello one", "two"]
    assert end - seen[0][0] >= 0.8


def peak_rss_kb_during(action: Callable[[], object]) -> int:
    """How far this process's resident memory rose above its level before action."""
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current VmRSS
    before = proc_status_kb("VmHWM")
    action()
    return proc_status_kb("VmHWM") - before


def proc_status_kb(field: str) -> int:
    line = next(li for li in Path("/proc/self/status").read_text().splitlines()
                if li.startswith(f"{field}:"))
    return int(line.split()[1])


def test_build_output_holds_the_worker_memory_bounded(env: Env) -> None:
    """A 50 MB line without a newline, then half a million short lines faster than they are
    taken: the worker keeps a bounded part of it, and the long line arrives cut."""
    script = "head -c 52428800 /dev/zero | tr '\\0' x; echo; yes y | head -n 500000; echo done"
    seen: list[str] = []

    def slow_at_first(line: str) -> None:
        if not seen:
            time.sleep(3)  # the pipe and the reader fill up meanwhile
        seen.append(line if len(seen) < 2 else line[:8])

    spec = build_spec(env, "build-flood", script, timeout=180)
    codes: list[int] = []
    risen_kb = peak_rss_kb_during(lambda: codes.append(env.runtime.run_build(spec, slow_at_first)))
    assert codes == [0]
    assert risen_kb < 40 * 1024, f"the worker grew by {risen_kb} KB"
    assert seen[0].startswith("x" * 10240)
    assert seen[0].endswith(" [line cut: 52418560 more bytes]")
    assert len(seen[0]) < 11 * 1024
    assert len(seen) == 1 + 500000 + 1 and seen[-1] == "done"


def test_build_timeout_returns_124_and_leaves_nothing(env: Env) -> None:
    begin = time.monotonic()
    code = env.runtime.run_build(
        build_spec(env, "build-slow", "echo start; sleep 30", timeout=1), lambda _: None
    )
    assert code == 124
    assert time.monotonic() - begin < 10
    runc = ["runc", "--root", str(env.settings.runc_root), "list", "--format", "json"]
    listed = json.loads(subprocess.run(runc, capture_output=True, text=True).stdout or "null")
    assert "build-slow" not in [c["id"] for c in listed or []]
    assert not (env.runtime.build_root / "build-slow").exists()
    iid = env.settings.install_id
    assert not any(Path("/sys/fs/cgroup").glob(f"*/paas-{iid}/build-slow"))


def test_build_writes_workspace_and_binds_but_not_the_stack(env: Env) -> None:
    buildpacks = env.base / "buildpacks"
    buildpacks.mkdir(mode=0o755, exist_ok=True)
    (buildpacks / "detect").write_text("python\n")
    (buildpacks / "detect").chmod(0o644)
    cache = env.base / "cache"
    cache.mkdir(exist_ok=True)
    script = (
        "id -u; grep CapEff /proc/self/status; echo built > /app/out.txt; "
        "cat /cnb/buildpacks/detect; echo cached > /cache/c.txt; "
        "touch /usr/nope 2>/dev/null && echo usr-writable || echo usr-readonly; "
        "touch /cnb/buildpacks/nope 2>/dev/null && echo bp-writable || echo bp-readonly; "
        "test -s /etc/resolv.conf && echo resolv-ok"
    )
    lines: list[str] = []
    spec = build_spec(
        env,
        "build-fs",
        script,
        ro_binds=[(buildpacks, "/cnb/buildpacks")],
        rw_binds=[(cache, "/cache")],
    )
    assert env.runtime.run_build(spec, lines.append) == 0
    assert lines[:2] == [str(UID), "CapEff:\t0000000000000000"]
    assert "python" in lines
    assert "usr-readonly" in lines
    assert "bp-readonly" in lines
    if Path("/etc/resolv.conf").stat().st_size:
        assert "resolv-ok" in lines
    assert (spec.workspace / "out.txt").read_text() == "built\n"
    assert (spec.workspace / "out.txt").stat().st_uid == UID
    assert (cache / "c.txt").read_text() == "cached\n"
    assert not Path("/usr/nope").exists()


def test_build_sees_the_hosts_pip_configuration(env: Env) -> None:
    host_conf = subprocess.run(
        ["/usr/bin/python3", "-m", "pip", "config", "list"], capture_output=True, text=True
    )
    assert host_conf.returncode == 0, host_conf.stderr
    lines: list[str] = []
    spec = build_spec(env, "build-pip", "/usr/bin/python3 -m pip config list")
    assert env.runtime.run_build(spec, lines.append) == 0
    assert sorted(lines) == sorted(host_conf.stdout.splitlines())
    mentioned = client_config(os.environ).paths
    probe = " ".join(f"test -e {shlex.quote(str(p))} || echo missing {p};" for p in mentioned)
    lines.clear()
    assert env.runtime.run_build(build_spec(env, "build-paths", probe or "true"), lines.append) == 0
    assert lines == []


def test_build_gets_the_hosts_pip_configuration_translated_for_the_bound_uv(env: Env) -> None:
    """What the python buildpack's uvconf.py says in a build is the host's pip settings (its
    pip config files and PIP_* variables) as uv's; the platform's uv runs there, read-only."""
    from tests.unit.test_python_uvconf import UVCONF, uvconf

    environ = passthrough_env(os.environ)
    expected, flags, _ = uvconf.uv_settings(uvconf.pip_settings(environ, list(PIP_CONFIGS)), {})
    uv = tools.platform_uv()
    assert uv is not None
    lines: list[str] = []
    script = ('eval "$(/usr/bin/python3 /cnb/uvconf.py 2>/dev/null)"; env | grep -E '
              "'^(UV_|SSL_C)' | sort; echo \"flags: ${uv_flags[*]}\"; /cnb/tools/uv --version;"
              " test -w /cnb/tools/uv && echo writable; : >/cnb/tools/uv && echo wrote;"
              " echo done")
    spec = build_spec(env, "build-uvconf", script, command=["/bin/bash", "-c", script],
                      ro_binds=[(UVCONF, "/cnb/uvconf.py"), (uv, tools.UV_MOUNT)])
    assert env.runtime.run_build(spec, lines.append) == 0
    # The write refused (bash's stderr: its place among the stdout lines varies).
    refused = "/bin/bash: line 1: /cnb/tools/uv: Read-only file system"
    assert lines.count(refused) == 1
    lines.remove(refused)
    assert lines[:-2] == [*sorted(f"{k}={v}" for k, v in expected.items()),
                          f"flags: {' '.join(flags)}"]
    assert lines[-2].startswith("uv ") and lines[-1] == "done"


def test_teardown_of_an_empty_installation_is_safe(tmp_path: Path) -> None:
    runtime = Runtime(Settings(home=tmp_path / "nothing", dyno_subnet=SUBNET))
    runtime.teardown()
    runtime.teardown()
    assert runtime.list_dynos() == []


CONNECT_TO_GATEWAY = """
import os, socket, sys
for source in (0, int(os.environ["PORT"])):  # any source port, and the one host flows go to
    for port in sys.argv[2:]:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.settimeout(2)
        try:
            sock.bind(("0.0.0.0", source))
            sock.connect((sys.argv[1], int(port)))
            print(f"port {port} from {source}: connected", flush=True)
        except OSError as error:
            print(f"port {port} from {source}: {error}", flush=True)
        finally:
            sock.close()
"""


def test_a_dyno_reaches_only_the_host_ports_the_operator_opened(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    layer = tmp_path / "layer"
    layer.mkdir(mode=0o755)
    app_index = APP_INDEX + 2  # beside the module's runtime, on a network of its own
    gateway = str(next(iter(app_network(SUBNET, app_index).hosts())))
    with socket.create_server(("0.0.0.0", 0)) as opened, \
            socket.create_server(("0.0.0.0", 0)) as closed:
        ports = [str(server.getsockname()[1]) for server in (opened, closed)]
        settings = Settings(home=tmp_path / "home", dyno_subnet=SUBNET, dyno_host_ports=ports[0])
        runtime = Runtime(settings)
        try:
            runtime.start_dyno(DynoSpec(
                id="reach", app="reach", app_index=app_index, uid=UID,
                command=["/usr/bin/python3", "-c", CONNECT_TO_GATEWAY, gateway, *ports],
                env={"PORT": str(settings.dyno_port)}, layers=[layer], memory_mb=128,
                pids_limit=64, metadata={}))
            wait_for(lambda: status_of(runtime, "reach").state == "exited", timeout=30)
            output = status_of(runtime, "reach").log_path.read_text()
        finally:
            runtime.teardown()
    for source in ("0", str(settings.dyno_port)):
        assert f"port {ports[0]} from {source}: connected" in output, output
        # not reached; any refusal will do
        assert f"port {ports[1]} from {source}: " in output, output
        assert f"port {ports[1]} from {source}: connected" not in output, output


DISK_PROBE = """
dd if=/dev/zero of=/app/fill bs=1M count=200 2>&1 | head -1
grep -c . /proc/self/mountinfo
cat /proc/self/mountinfo
readlink /proc/self/fd/1
"""


def test_a_dyno_disk_is_its_own_memory_and_its_mounts_name_nothing(env: Env) -> None:
    spec = dyno_spec(env, "disk", ["/bin/sh", "-c", DISK_PROBE + "exec sleep 60"],
                     disk_mb=32)
    status = env.runtime.start_dyno(spec)
    wait_for(lambda: "pipe:" in status.log_path.read_text())
    out = status.log_path.read_text()
    assert "No space left on device" in out, out
    assert "lowerdir=l0,upperdir=upper,workdir=work" in out, out
    assert str(env.base) not in out and str(env.settings.home) not in out, out
    cgroup = Path(f"/sys/fs/cgroup/memory/paas-{env.settings.install_id}/disk/memory.stat")
    shmem = next(int(line.split()[1]) for line in cgroup.read_text().splitlines()
                 if line.startswith("shmem "))
    assert 31 * 1024 * 1024 <= shmem <= 33 * 1024 * 1024
    assert env.runtime.memory_mb("disk") >= 31
    disk = env.settings.dynos_dir / "disk" / "disk"
    assert disk in mounts_under(env.base)
    env.runtime.remove_dyno("disk")
    assert mounts_under(env.settings.dynos_dir) == []


def test_a_dynos_monitor_starts_in_the_detached_cgroup(env: Env) -> None:
    """`paas up` passes its own cgroup (PAAS_DETACHED_CGROUP): a monitor that started in the
    agent's and was moved later would leave its memory charged there (cgroup v1)."""
    group = Path(f"/sys/fs/cgroup/memory/paas-test-detached-{os.getpid()}")
    group.mkdir()
    try:
        runtime = Runtime(dataclasses.replace(env.settings, detached_cgroup=str(group)))
        runtime.start_dyno(dyno_spec(env, "detached-1", ["/bin/sleep", "60"]))
        monitor = int((env.settings.dynos_dir / "detached-1" / "monitor.pid").read_text())
        memory = [line.split(":", 2)[2] for line in
                  Path(f"/proc/{monitor}/cgroup").read_text().splitlines()
                  if "memory" in line.split(":", 2)[1].split(",")]
        assert memory == [f"/{group.name}"]
        runtime.remove_dyno("detached-1")
    finally:
        group.rmdir()
