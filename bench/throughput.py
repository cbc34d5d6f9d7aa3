"""Throughput of one app along each path to it, printed as one JSON line (root; wrk, nginx,
runc): the same Flask app (bench/apps/flask-gunicorn, one gunicorn sync worker), each row
`wrk -t2 -c20 -d10s`:

- loopback: gunicorn on 127.0.0.1 in the host's namespace;
- bare: the same gunicorn in a network namespace of the bench's own, behind a veth on a
  bridge of its own (no runc, no seccomp, no cgroup): the baseline issue 15 names;
- dyno: the app deployed on a paas platform (git push), straight to its bridge address;
- router: the same dyno through the paas router;
- minimal_nginx: the same dyno through a hand-written nginx `proxy_pass` (upstream
  keepalive, no Lua, no logs).

`--causes` adds the dyno's parts one at a time, as runc containers in the bench's own
namespace: `runc` (the dyno's OCI config without seccomp, without CPU shares), `runc_seccomp`
(with the dyno's seccomp profile), `runc_cpu` (with a basic dyno's CPU shares), and `tw_reuse`
rows (bare and dyno with the host's net.ipv4.tcp_tw_reuse at the kernel's default, 2:
loopback only; restored after).

gunicorn's sync worker closes every connection, so each request is a new TCP connection
whose TIME_WAIT stays with the client (wrk, nginx) for 60 s: the client's ephemeral ports
towards one address:port run out unless the kernel may reuse them (tcp_tw_reuse). Each row
starts with the ports towards its target unused (a target of its own: a fresh port).

Load goes only to loopback and bridges the bench creates (the platform's, the bench's own).
Bounded: 5 rows of 10 s (10 with --causes), one platform deploy. The bench's namespace,
veths, bridge, cgroups and nginx are removed at the end.

Usage: PAAS_TEST_SUBNETS=130-139 PAAS_TEST_PORTS=55000-57999 \
       flock /tmp/heavy.lock .venv/bin/python bench/throughput.py [--seconds 10] [--causes]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from paas import cgroups
from paas.runtime import oci
from paas.runtime.containers import cpu_shares
from paas.runtime.runc import runc_binary
from paas.sizes import SIZES
from tests.platform import Platform, free_port, free_subnet, git

APP = "tput"
APP_DIR = Path(__file__).resolve().parent / "apps" / "flask-gunicorn"
VENV = Path("/tmp/paas-bench-throughput-venv")  # kept between runs: pip is not what is timed
THREADS, CONNECTIONS = 2, 20
TW_REUSE = Path("/proc/sys/net/ipv4/tcp_tw_reuse")
CGROUP_PARENT = "paas-bench-throughput"
UID = 10001

MINIMAL_NGINX = """\
worker_processes auto;
daemon on;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/tmp;
    proxy_temp_path {dir}/tmp;
    upstream dyno {{ server {peer}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://dyno;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
        }}
    }}
}}
"""


def wrk(url: str, seconds: int, host: str = "localhost", netns: str | None = None) -> dict:
    prefix = ["ip", "netns", "exec", netns] if netns else []
    out = subprocess.run([*prefix, "wrk", f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{seconds}s",
                          "--latency", "-H", f"Host: {host}", url],
                         capture_output=True, text=True, check=True, timeout=seconds + 30).stdout
    rps = _search(r"Requests/sec:\s+([\d.]+)", out)
    errors = _search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = _search(r"Socket errors: (.*)", out)
    return {"rps": round(float(rps or 0)), "p50_ms": _latency(out, "50%"),
            "p99_ms": _latency(out, "99%"), "non_2xx": int(errors or 0),
            "socket_errors": socket_errors or ""}


def _search(pattern: str, text: str) -> str | None:
    found = re.search(pattern, text, re.M)
    return found.group(1) if found else None


def _latency(out: str, label: str) -> float:
    found = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    if not found:
        return 0.0
    value, unit = found.groups()
    return round(float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit], 3)


def wait_serving(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.1)
    raise SystemExit(f"nothing served {url} within {timeout:g} s")


@contextlib.contextmanager
def tw_reuse(value: int) -> Iterator[None]:
    """The host namespace's net.ipv4.tcp_tw_reuse at `value` for the block."""
    before = TW_REUSE.read_text().strip()
    TW_REUSE.write_text(str(value))
    try:
        yield
    finally:
        TW_REUSE.write_text(before)


def ensure_venv() -> None:
    if (VENV / "bin" / "gunicorn").exists():
        return
    # The system's python: a container sees /usr, not a python installed under /root.
    subprocess.run(["/usr/bin/python3", "-m", "venv", str(VENV)], check=True)
    subprocess.run([str(VENV / "bin" / "pip"), "install", "-q", "-r",
                    str(APP_DIR / "requirements.txt")], check=True)
    VENV.chmod(0o755)


def gunicorn(port: int, bind: str = "0.0.0.0") -> list[str]:
    return [str(VENV / "bin" / "gunicorn"), "--workers", "1", "--bind", f"{bind}:{port}",
            "hello:app"]


class BareNet:
    """A bridge, a namespace and a veth between them, like a dyno's but made with nothing
    of paas: the bench's baseline."""

    def __init__(self, subnet: str) -> None:
        octets = subnet.split(".")
        self.gateway = f"{octets[0]}.{octets[1]}.250.1"
        self.ip = f"{octets[0]}.{octets[1]}.250.2"
        self.bridge, self.veth, self.netns = "pbtbr0", "pbtv0", "pbt-bare"

    def create(self) -> None:
        self.delete()
        for args in (["link", "add", self.bridge, "type", "bridge"],
                     ["addr", "add", f"{self.gateway}/24", "dev", self.bridge],
                     ["link", "set", self.bridge, "up"],
                     ["netns", "add", self.netns],
                     ["-n", self.netns, "link", "set", "lo", "up"],
                     ["link", "add", self.veth, "type", "veth", "peer", "name", "eth0",
                      "netns", self.netns],
                     ["-n", self.netns, "addr", "add", f"{self.ip}/24", "dev", "eth0"],
                     ["-n", self.netns, "link", "set", "eth0", "up"],
                     ["link", "set", self.veth, "master", self.bridge],
                     ["link", "set", self.veth, "up"]):
            subprocess.run(["ip", *args], check=True)

    def delete(self) -> None:
        for args in (["link", "delete", self.veth], ["link", "delete", self.bridge],
                     ["netns", "delete", self.netns]):
            subprocess.run(["ip", *args], check=False, stderr=subprocess.DEVNULL)


@contextlib.contextmanager
def process(args: list[str], url: str) -> Iterator[None]:
    proc = subprocess.Popen(args, cwd=APP_DIR, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        wait_serving(url)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def container_config(base: Path, net: BareNet, port: int, seccomp: bool,
                     shares: int | None) -> dict:
    """The dyno's OCI config (oci.config_json) around the bench's gunicorn, with its seccomp
    profile and CPU shares each left out unless asked for."""
    config = oci.config_json(oci.ContainerConfig(
        hostname="bench", uid=UID, args=gunicorn(port), env={}, app_source=base / "app",
        memory_mb=512, pids_limit=256, cgroups_path=f"/{CGROUP_PARENT}/c{port}",
        netns_path=f"/var/run/netns/{net.netns}", cpu_shares=shares or 1024,
        extra_mounts=[oci.bind(VENV, str(VENV))]))
    config = copy.deepcopy(config)
    if not seccomp:
        del config["linux"]["seccomp"]
    if shares is None:
        del config["linux"]["resources"]["cpu"]
    return config


@contextlib.contextmanager
def container(base: Path, net: BareNet, port: int, seccomp: bool,
              shares: int | None) -> Iterator[str]:
    bundle = base / f"bundle-{port}"
    oci.write_rootfs(bundle / "rootfs", oci.etc_files(UID, "bench", "127.0.0.1 localhost\n"))
    (bundle / "config.json").write_text(json.dumps(container_config(base, net, port, seccomp,
                                                                    shares)))
    runc, root, name = runc_binary(), str(base / "runc"), f"pbt{port}"
    url = f"http://{net.ip}:{port}/"
    try:
        with process([runc, "--root", root, "run", "--bundle", str(bundle), name], url):
            yield url
    finally:
        subprocess.run([runc, "--root", root, "delete", "--force", name], check=False,
                       stderr=subprocess.DEVNULL)
        cgroups.on_host().remove(CGROUP_PARENT)


def deploy(base: Path, platform: Platform) -> str:
    """The bench app on the platform; its web dyno's address."""
    repo = base / "repo"
    shutil.copytree(APP_DIR, repo)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "bench")
    platform.paas("apps:create", APP)
    git(repo, "push", platform.remote_url(APP), "main")
    platform.wait_for(APP, "python/flask", timeout=300)
    token = (platform.home / "service-token").read_text().strip()
    routes = httpx.get(f"{platform.api_url}/v1/internal/routes",
                       headers={"Authorization": f"Bearer {token}"}).json()["routes"]
    return str(routes[f"{APP}.localhost"]["peers"][0]["addr"])


@contextlib.contextmanager
def minimal_nginx(base: Path, peer: str) -> Iterator[str]:
    directory = base / "minimal-nginx"
    (directory / "tmp").mkdir(parents=True)
    port = free_port()
    conf = directory / "nginx.conf"
    conf.write_text(MINIMAL_NGINX.format(dir=directory, peer=peer, port=port))
    subprocess.run(["nginx", "-p", f"{directory}/", "-c", str(conf)], check=True)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        subprocess.run(["nginx", "-p", f"{directory}/", "-c", str(conf), "-s", "quit"],
                       check=False, stderr=subprocess.DEVNULL)


def ratio(a: dict, b: dict) -> float:
    return round(a["rps"] / b["rps"], 3) if b.get("rps") else 0.0


def local_rows(base: Path, net: BareNet, seconds: int, causes: bool) -> dict[str, dict]:
    rows: dict[str, dict] = {}
    port = free_port()
    with process(gunicorn(port, "127.0.0.1"), f"http://127.0.0.1:{port}/"):
        rows["loopback"] = wrk(f"http://127.0.0.1:{port}/", seconds)
    ns = ["ip", "netns", "exec", net.netns]
    # The baseline with the host's TIME_WAIT reuse as paas up sets it (network.py).
    for name, reuse in (("bare", 1), *((("bare_tw_reuse_2", 2),) if causes else ())):
        port = free_port()
        url = f"http://{net.ip}:{port}/"
        with process([*ns, *gunicorn(port)], url), tw_reuse(reuse):
            rows[name] = wrk(url, seconds)
    if causes:
        basic = cpu_shares(SIZES["basic"].memory_mb)
        for name, seccomp, shares in (("runc", False, None), ("runc_seccomp", True, None),
                                      ("runc_cpu", False, basic)):
            with container(base, net, free_port(), seccomp, shares) as url:
                rows[name] = wrk(url, seconds)
    return rows


def platform_rows(base: Path, seconds: int, causes: bool) -> dict[str, dict]:
    rows: dict[str, dict] = {}
    platform = Platform.create()
    try:
        platform.up()
        peer = deploy(base, platform)
        host = f"{APP}.localhost"
        router = f"http://127.0.0.1:{platform.router_port}/"
        wrk(router, 2, host)  # warm-up: the dyno's first requests, nginx's workers
        time.sleep(1)
        rows["host_tcp_tw_reuse_under_paas"] = {"value": TW_REUSE.read_text().strip()}
        rows["dyno"] = wrk(f"http://{peer}/", seconds, host)
        rows["router"] = wrk(router, seconds, host)
        with minimal_nginx(base, peer) as url:
            rows["minimal_nginx"] = wrk(url, seconds, host)
        if causes:
            with tw_reuse(2):
                rows["dyno_tw_reuse_2"] = wrk(f"http://{peer}/", seconds, host)
    finally:
        platform.down()
    return rows


def report(rows: dict[str, dict], seconds: int, started_reuse: str) -> dict:
    figures: dict[str, object] = {
        "bench": "throughput", "seconds_per_run": seconds, "threads": THREADS,
        "connections": CONNECTIONS, "host_tcp_tw_reuse": started_reuse, **rows,
    }
    pairs: list[tuple[str, str, str]] = [
        ("bare_vs_loopback", "bare", "loopback"), ("dyno_vs_bare", "dyno", "bare"),
        ("dyno_vs_loopback", "dyno", "loopback"), ("router_vs_dyno", "router", "dyno"),
        ("router_vs_minimal_nginx", "router", "minimal_nginx"),
        ("router_vs_loopback", "router", "loopback"),
        ("runc_vs_bare", "runc", "bare"), ("runc_seccomp_vs_runc", "runc_seccomp", "runc"),
        ("runc_cpu_vs_runc", "runc_cpu", "runc"),
        ("bare_tw_reuse_2_vs_bare", "bare_tw_reuse_2", "bare"),
        ("dyno_tw_reuse_2_vs_dyno", "dyno_tw_reuse_2", "dyno"),
    ]
    for name, a, b in pairs:
        if a in rows and b in rows:
            figures[f"rps_ratio_{name}"] = ratio(rows[a], rows[b])
    return figures


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--causes", action="store_true")
    args = parser.parse_args()
    ensure_venv()
    base = Path(tempfile.mkdtemp(prefix="paas-bench-tput-"))
    base.chmod(0o755)
    (base / "app").mkdir(mode=0o755)
    shutil.copy(APP_DIR / "hello.py", base / "app" / "hello.py")
    net = BareNet(free_subnet())
    started_reuse = TW_REUSE.read_text().strip()
    try:
        net.create()
        rows = local_rows(base, net, args.seconds, args.causes)
        net.delete()
        rows.update(platform_rows(base, args.seconds, args.causes))
    finally:
        net.delete()
        shutil.rmtree(base, ignore_errors=True)
    print(json.dumps(report(rows, args.seconds, started_reuse)))


if __name__ == "__main__":
    main()
