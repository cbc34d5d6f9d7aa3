"""Escapes, from inside a dyno and from inside a build: the escape-probe app's buildpack runs
tests/apps/escape-probe/escape.py at build time (its findings go into the build log) and its
web dyno runs it per request. Every attempt fails there, while the same probe on the host (the
positive control) succeeds."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from paas.runtime.agent import FIREWALL_CHECK_INTERVAL
from paas.runtime.firewall import Table
from paas.runtime.network import interfaces_on
from paas.settings import Settings
from router.nginx import Router
from tests.platform import APPS, Platform, app_repo, free_port, git, second_subnet

pytestmark = pytest.mark.e2e
PROBE = APPS / "escape-probe" / "escape.py"


def dyno_port(platform: Platform) -> int:
    """The platform's PAAS_DYNO_PORT: its dynos' $PORT."""
    configured = platform.env.get("PAAS_DYNO_PORT")
    return int(configured) if configured else Settings(home=platform.home).dyno_port


def dynos(platform: Platform, app: str) -> list[dict[str, Any]]:
    return json.loads(platform.paas("ps", "-a", app, "--json").stdout)


def targets(platform: Platform, victim: str, victim_ip: str,
            host_port: int) -> dict[str, list[str]]:
    home, api, port = platform.home, platform.api_url, dyno_port(platform)
    control = f"http://127.0.0.1:{platform.env['PAAS_ROUTER_CONTROL_PORT']}/routes"
    node = platform.env.get("PAAS_NODE_NAME") or socket.gethostname()  # the agent's node
    return {
        "read": [str(home), str(home / "paas.db"), str(home / "admin-token"),
                 str(home / "service-token"), str(home / "dashboard-secret"),
                 str(home / "repos" / f"{victim}.git"), str(home / "dynos"),
                 str(home / "layers"), "/root"],
        "unix": [str(home / "redis" / "redis.sock")],
        "http": [f"{api}/v1/internal/nodes/{node}/desired", f"{api}/v1/internal/routes",
                 f"{api}/v1/apps", f"{api}/v1/apps/{victim}/config", control,
                 f"http://{victim_ip}:{port}/"],
        # "gateway": the host's end of the prober's own bridge (tests/apps/escape-probe)
        "tcp": [f"{victim_ip}:{port}", f"127.0.0.1:{platform.env['PAAS_API_PORT']}",
                f"gateway:{host_port}"],
        "setuid": ["/app/suid-id"],
    }


def host_probe(escape_targets: dict[str, list[str]]) -> dict[str, Any]:
    return json.loads(subprocess.run(
        ["/usr/bin/python3", str(PROBE), "--print"], capture_output=True, text=True, check=True,
        env={**os.environ, "ESCAPE_TARGETS": json.dumps(escape_targets)}).stdout)


def setuid_root_id(directory: Path) -> Path:
    """A setuid-root copy of /usr/bin/id: run by anyone else, it shows euid=0."""
    copy = directory / "suid-id"
    shutil.copy("/usr/bin/id", copy)
    os.chown(copy, 0, 0)
    copy.chmod(0o4755)
    return copy


def failed(results: dict[str, str]) -> dict[str, str]:
    """The attempts that did NOT fail (should be empty)."""
    return {what: result for what, result in results.items() if not result.startswith("failed")}


@pytest.fixture
def host_service() -> Iterator[socket.socket]:
    """A host service listening on every address, as sshd or a database may."""
    with socket.create_server(("0.0.0.0", 0)) as server:
        yield server


def test_escapes_from_a_dyno_and_from_a_build_fail(platform: Platform, tmp_path: Path,
                                                   host_service: socket.socket) -> None:
    suffix = uuid.uuid4().hex[:6]
    victim, app = f"esc-victim-{suffix}", f"esc-{suffix}"
    platform.paas("apps:create", victim)
    victim_repo = app_repo(tmp_path / victim, "procfile-only")
    assert git(victim_repo, "push", platform.remote_url(victim), "main",
               check=False).returncode == 0
    victim_ip = next(d["ip"] for d in dynos(platform, victim) if d["state"] == "up")
    escape_targets = targets(platform, victim, victim_ip, host_service.getsockname()[1])

    platform.paas("apps:create", app)
    platform.paas("config:set", f"ESCAPE_TARGETS={json.dumps(escape_targets)}", "-a", app)
    repo = app_repo(tmp_path / app, "escape-probe")
    push = git(repo, "push", platform.remote_url(app), "main", check=False)
    assert push.returncode == 0, push.stderr
    line = next(line for line in push.stderr.splitlines() if "ESCAPE-BUILD " in line)
    build = json.loads(line.split("ESCAPE-BUILD ", 1)[1])

    dyno = next(d for d in dynos(platform, app) if d["state"] == "up")
    setuid_root_id(platform.home / "dynos" / dyno["id"] / "disk" / "upper")  # as /app/suid-id
    inside = platform.wait_for(app, "unshare_user").json()

    control_dir = Path(tempfile.mkdtemp(prefix="escape-control-"))
    try:
        control_dir.chmod(0o755)
        host_setuid = subprocess.run(
            ["setpriv", f"--reuid={inside['uid']}", f"--regid={inside['uid']}",
             "--clear-groups", str(setuid_root_id(control_dir))],
            capture_output=True, text=True, check=True).stdout
        gateway = gateway_of(dyno["ip"])
        host = host_probe({**escape_targets, "http": [], "tcp": [
            target.replace("gateway:", f"{gateway}:") for target in escape_targets["tcp"]]})
    finally:
        shutil.rmtree(control_dir)
    service = (platform.home / "service-token").read_text().strip()
    with httpx.Client(headers={"Authorization": f"Bearer {service}"}, timeout=10) as client:
        host_api = [client.get(url).status_code for url in escape_targets["http"][:2]]

    # the positive controls: the host reads, connects, mounts, unshares, ptraces, and the
    # setuid copy raises a plain user to euid 0; the service token opens the internal API
    assert failed(host["read"]) == host["read"] and failed(host["unix"]) == host["unix"]
    assert failed(host["tcp"]) == host["tcp"]
    assert [host[k] for k in ("mount", "unshare_user", "unshare_mount", "ptrace")] == ["ok"] * 4
    assert "euid=0" in host_setuid
    assert host_api == [200, 200]
    assert any("nginx" in p for p in host["processes"])

    # a dyno: no file, socket, endpoint, other dyno or privilege of anyone else
    assert inside["uid"] >= 20000
    for kind in ("read", "unix", "http", "tcp"):
        assert failed(inside[kind]) == {}, (kind, inside[kind])
    assert [inside[k][:6] for k in ("mount", "unshare_user", "unshare_mount", "ptrace")] == [
        "failed"] * 4, inside
    assert "euid" not in inside["setuid"]["/app/suid-id"], inside["setuid"]
    assert f"uid={inside['uid']}" in inside["setuid"]["/app/suid-id"]
    assert all("escape.py" in p or "sleep" in p or not p for p in inside["processes"])

    # a build: none of the platform's files, sockets, services or privileges, and no dyno
    assert build["uid"] == inside["uid"]
    for kind in ("read", "unix", "http", "tcp"):
        assert failed(build[kind]) == {}, (kind, build[kind])
    assert [build[k][:6] for k in ("mount", "unshare_user", "unshare_mount", "ptrace")] == [
        "failed"] * 4, build
    assert not any("nginx" in p or "redis" in p or "paas" in p for p in build["processes"])
    # Its own namespace has only a loopback (the host's loopback services are not there) and
    # no dyno network is routed (any refusal will do, above). What leaves goes through the
    # build's egress proxy (package registries), which refuses the host's and the dynos'
    # addresses and says so in the log.
    refused = (f"Egress refused: {victim_ip}:{dyno_port(platform)}: {victim_ip} is an "
               "address of the host")
    assert refused in push.stderr
    # the router's control endpoint wants its secret even on the host
    control = escape_targets["http"][4]
    with httpx.Client(timeout=10) as client:
        assert client.put(control, content=b"").status_code == 403
    assert Router(Settings(home=platform.home, router_control_port=int(
        platform.env["PAAS_ROUTER_CONTROL_PORT"]))).get_routes()[f"{app}.localhost"]
    for app_name in (app, victim):
        platform.paas("apps:destroy", app_name, "--confirm", app_name)


def test_the_agent_repairs_a_deleted_firewall_table(platform: Platform, tmp_path: Path,
                                                    host_service: socket.socket) -> None:
    """Something on the host deletes the platform's table (`nft flush ruleset`) while a dyno
    runs: within the agent's check interval the table is back with the dyno's bridge in its
    sets, and the dyno is again refused a host service the host itself reaches."""
    app = f"nft-{uuid.uuid4().hex[:6]}"
    platform.paas("apps:create", app)
    push = git(app_repo(tmp_path / app, "escape-probe"), "push", platform.remote_url(app),
               "main", check=False)
    assert push.returncode == 0, push.stderr
    ip = up_dynos(platform, app, 1)[0]["ip"]
    bridge = interfaces_on(ipaddress.ip_network(f"{ip}/24", strict=False))[0]
    table = Table(Settings(home=platform.home).install_id)
    target = f"gateway:{host_service.getsockname()[1]}"

    def from_the_dyno() -> str:
        with httpx.Client(timeout=60) as client:
            return str(client.get(f"http://{ip}:{dyno_port(platform)}/", params={
                "targets": json.dumps({"tcp": [target]})}).json()["tcp"][target])

    assert from_the_dyno().startswith("failed")
    assert nft("delete", "table", *table.ref.split()).returncode == 0
    deadline = time.monotonic() + 2 * FIREWALL_CHECK_INTERVAL + 20  # a loaded machine
    while bridge not in ((sets := table.sets()) or {}).get("dyno_bridges", []):
        assert time.monotonic() < deadline, f"no table with {bridge} after the agent's check"
        time.sleep(0.5)
    assert [bridge, gateway_of(ip)] in sets["gateways"]
    assert from_the_dyno().startswith("failed")
    # the controls: the host reaches its service on that address, the router the dyno
    host = host_probe({"tcp": [target.replace("gateway", gateway_of(ip))]})
    assert failed(host["tcp"]) == host["tcp"], host["tcp"]
    assert platform.get(app, "/").status_code == 200
    platform.paas("apps:destroy", app, "--confirm", app)


# ---- the network: no source port, address or protocol takes a dyno to the host -------------



def source_ports(port: int) -> list[int]:
    """$PORT (what the host's connections go to), 5000 (the usual $PORT), any (0), a free one
    from the ephemeral range, the lowest unprivileged one, and a privileged one (DNS: a dyno
    may not bind it, which is a refusal like any other)."""
    return list(dict.fromkeys((port, 5000, 0, free_port(), 1024, 53)))


class HostListeners:
    """A TCP and a UDP service on every address of the host (0.0.0.0), on ports the kernel picks
    (so inside its ephemeral range), recording the address of whoever reaches them; the UDP one
    answers each datagram."""

    def __init__(self) -> None:
        self.tcp = socket.create_server(("0.0.0.0", 0))
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("0.0.0.0", 0))
        self.peers: set[str] = set()
        for serve in (self._accept, self._answer):
            threading.Thread(target=serve, daemon=True).start()

    def ports(self) -> tuple[int, int]:
        return self.tcp.getsockname()[1], self.udp.getsockname()[1]

    def _accept(self) -> None:
        while True:
            try:
                connection, (address, _) = self.tcp.accept()
            except OSError:
                return
            self.peers.add(address)
            connection.close()

    def _answer(self) -> None:
        while True:
            try:
                data, peer = self.udp.recvfrom(100)
            except OSError:
                return
            if peer is None:  # shut down
                return
            self.peers.add(peer[0])
            self.udp.sendto(data, peer)

    def close(self) -> None:
        for sock in (self.tcp, self.udp):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


@pytest.fixture
def listeners() -> Iterator[HostListeners]:
    found = HostListeners()
    yield found
    found.close()


def main_address() -> str | None:
    """The host's address on its way to a default route, if it has one."""
    routes = json.loads(subprocess.run(["ip", "-j", "-4", "route", "show", "default"],
                                       capture_output=True, text=True, check=True).stdout)
    for route in routes:
        addresses = json.loads(subprocess.run(
            ["ip", "-j", "-4", "addr", "show", "dev", route["dev"]], capture_output=True,
            text=True, check=True).stdout)
        for link in addresses:
            for info in link.get("addr_info", []):
                return str(info["local"])
    return None


def up_dynos(platform: Platform, app: str, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 60
    while len(up := [d for d in dynos(platform, app) if d["state"] == "up"]) < count:
        assert time.monotonic() < deadline, dynos(platform, app)
        time.sleep(0.3)
    return up


def gateway_of(ip: str) -> str:
    return str(next(iter(ipaddress.ip_network(f"{ip}/24", strict=False).hosts())))


def test_no_source_port_takes_a_dyno_to_a_host_service(tmp_path: Path,
                                                       listeners: HostListeners) -> None:
    """Stateless rules let a dyno through that sends from the port the host's connections go
    to: every source-port trick, to every address of the host, over TCP and UDP, is refused;
    the same probe from the host gets through, and so do the router, an opened host port and
    the app's own other dyno. Another app's dyno is out of reach."""
    tcp_port, udp_port = listeners.ports()
    low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    assert low <= tcp_port <= high and low <= udp_port <= high
    with socket.create_server(("0.0.0.0", 0)) as opened:
        opened_port = opened.getsockname()[1]
        # $PORT not the default: nothing here may take it for granted
        platform = Platform.create(PAAS_DYNO_HOST_PORTS=str(opened_port),
                                   PAAS_DYNO_PORT=str(free_port()),
                                   PAAS_DYNO_SUBNET=second_subnet())
        table = ["inet", f"paas_{Settings(home=platform.home).install_id}"]
        try:
            platform.up()
            made_by_up = nft("list", "table", *table).returncode == 0
            network_probe(platform, tmp_path, listeners, opened_port)
        finally:
            platform.down()
    assert made_by_up, "`paas up` made no firewall table"
    assert nft("list", "table", *table).returncode != 0, "`paas down` left its table"


def nft(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["nft", *args], capture_output=True, text=True, check=False)


def network_probe(platform: Platform, tmp_path: Path, listeners: HostListeners,
                  opened_port: int) -> None:
    suffix = uuid.uuid4().hex[:6]
    victim, app = f"net-victim-{suffix}", f"net-{suffix}"
    for name, sample in ((victim, "procfile-only"), (app, "escape-probe")):
        platform.paas("apps:create", name)
        push = git(app_repo(tmp_path / name, sample), "push", platform.remote_url(name), "main",
                   check=False)
        assert push.returncode == 0, push.stderr
    platform.paas("ps:scale", "web=2", "-a", app)
    prober, sibling = up_dynos(platform, app, 2)[:2]
    victim_ip = up_dynos(platform, victim, 1)[0]["ip"]
    addresses = ["gateway", gateway_of(victim_ip), *filter(None, [main_address()])]
    tcp_port, udp_port = listeners.ports()
    sources, port = source_ports(dyno_port(platform)), dyno_port(platform)
    attempts = {
        "tcp_from": [f"{s}>{a}:{tcp_port}" for s in sources for a in addresses],
        "udp_from": [f"{s}>{a}:{udp_port}" for s in sources for a in addresses],
        "tcp": [f"gateway:{opened_port}", f"{sibling['ip']}:{port}", f"{victim_ip}:{port}"],
    }
    with httpx.Client(timeout=120) as client:  # straight to the dyno: no router timeout
        inside = client.get(f"http://{prober['ip']}:{port}/",
                            params={"targets": json.dumps(attempts)}).json()
    reached = set(listeners.peers)
    own_gateway = gateway_of(prober["ip"])
    host = host_probe({kind: [t.replace("gateway", own_gateway) for t in targets]
                       for kind, targets in attempts.items()})

    # positive controls: the host gets through from every source port, to every address;
    # the router reaches the dyno; the operator's opened port and the app's other dyno are
    # reached from inside
    assert failed(host["tcp_from"]) == host["tcp_from"], host["tcp_from"]
    assert failed(host["udp_from"]) == host["udp_from"], host["udp_from"]
    assert failed(host["tcp"]) == host["tcp"], host["tcp"]
    assert platform.get(app, "/").status_code == 200
    assert inside["tcp"][f"gateway:{opened_port}"] == "ok", inside["tcp"]
    assert inside["tcp"][f"{sibling['ip']}:{port}"] == "ok", inside["tcp"]
    # the dyno: nothing reached, whatever it sent from (any refusal will do)
    assert failed(inside["tcp_from"]) == {}, failed(inside["tcp_from"])
    assert failed(inside["udp_from"]) == {}, failed(inside["udp_from"])
    assert not {prober["ip"], sibling["ip"]} & reached, reached
    assert inside["tcp"][f"{victim_ip}:{port}"].startswith("failed"), inside["tcp"]
