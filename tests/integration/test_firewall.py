"""The platform's nftables table against the real kernel (root only): dynos of one app reach
each other, dynos of two apps do not even once routed to each other, `paas down` removes the
table and nothing else, and the policy rules of earlier versions go."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from paas.runtime import DynoSpec, Runtime, firewall, network
from paas.settings import Settings
from tests.platform import PAAS, free_subnet

UID = 10001
SERVE = """
import socket, sys
server = socket.create_server(("0.0.0.0", int(sys.argv[1])))
while True:
    server.accept()[0].close()
"""
CONNECT = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2).close()
    print("connected")
except OSError as error:
    print(f"failed: {error}")
"""


@dataclass
class Installation:
    runtime: Runtime
    settings: Settings
    layer: Path

    @property
    def install_id(self) -> str:
        return self.settings.install_id

    def start(self, dyno_id: str, app_index: int) -> str:
        """A dyno serving TCP on the dyno port; returns its address."""
        port = str(self.settings.dyno_port)
        status = self.runtime.start_dyno(DynoSpec(
            id=dyno_id, app=f"app{app_index}", app_index=app_index, uid=UID,
            command=["/usr/bin/python3", "-c", SERVE, port], env={}, layers=[self.layer],
            memory_mb=128, pids_limit=64, metadata={}))
        deadline = time.monotonic() + 20
        while connect_from_host(status.ip, self.settings.dyno_port) != "connected":
            assert time.monotonic() < deadline, f"{dyno_id} never listened"
            time.sleep(0.1)
        return status.ip

    def connect_from(self, dyno_id: str, ip: str, port: int) -> str:
        """A connection from inside the dyno's network namespace, as the app's uid."""
        netns = network.netns_name(self.install_id, dyno_id)
        return subprocess.run(
            ["ip", "netns", "exec", netns, "setpriv", f"--reuid={UID}", f"--regid={UID}",
             "--clear-groups", "/usr/bin/python3", "-c", CONNECT, ip, str(port)],
            capture_output=True, text=True, check=True, timeout=20).stdout.strip()


@pytest.fixture
def installation(tmp_path: Path) -> Iterator[Installation]:
    tmp_path.chmod(0o755)
    layer = tmp_path / "layer"
    layer.mkdir(mode=0o755)
    settings = Settings(home=tmp_path / "home", dyno_subnet=free_subnet())
    runtime = Runtime(settings)
    try:
        yield Installation(runtime, settings, layer)
    finally:
        runtime.teardown()
        assert firewall.Table(settings.install_id).sets() is None


def connect_from_host(ip: str, port: int) -> str:
    try:
        socket.create_connection((ip, port), timeout=2).close()
        return "connected"
    except OSError as error:
        return f"failed: {error}"


def gateway(settings: Settings, app_index: int) -> str:
    return str(next(iter(network.app_network(settings.dyno_subnet, app_index).hosts())))


def route_out(installation: Installation, dyno_id: str, app_index: int) -> None:
    """What no dyno can do itself (it has no capability): a default route via its gateway, and
    forwarding on its bridge, as if the host routed between its networks."""
    netns = network.netns_name(installation.install_id, dyno_id)
    network.ip_cmd("-n", netns, "route", "add", "default", "via",
                   gateway(installation.settings, app_index))
    bridge = network.bridge_name(installation.install_id, app_index)
    Path(f"/proc/sys/net/ipv4/conf/{bridge}/forwarding").write_text("1")


def test_dynos_reach_their_own_app_but_not_another_even_when_routed(
        installation: Installation) -> None:
    port = installation.settings.dyno_port
    a1, a2 = installation.start("a1", 3), installation.start("a2", 3)
    b1 = installation.start("b1", 4)
    route_out(installation, "a1", 3)
    route_out(installation, "b1", 4)
    with socket.create_server(("0.0.0.0", 0)) as host_service:
        host_port = host_service.getsockname()[1]
        # bridged within the app: through the forward hook when bridge-nf-call-iptables is on
        assert installation.connect_from("a1", a2, port) == "connected"
        assert installation.connect_from("a1", b1, port).startswith("failed")
        assert installation.connect_from("b1", a1, port).startswith("failed")
        for address in (gateway(installation.settings, 3), gateway(installation.settings, 4)):
            assert installation.connect_from("a1", address, host_port).startswith("failed")
        # the controls: the host reaches both apps and its own service; without the table's
        # forward rules the route carries a1 to b1, so those rules are what stopped it
        assert connect_from_host(b1, port) == connect_from_host(a1, port) == "connected"
        assert connect_from_host(gateway(installation.settings, 3), host_port) == "connected"
        table = firewall.Table(installation.install_id).ref
        firewall.nft_script(f"flush chain {table} forward\n")
        assert installation.connect_from("a1", b1, port) == "connected"
        installation.start("b2", 4)  # every dyno start makes the table whole again
        assert installation.connect_from("a1", b1, port).startswith("failed")


def time_wait_left(ip: str, port: int) -> list[int]:
    """Seconds left on the conntrack TIME_WAIT entries of flows to ip:port."""
    found = []
    for line in Path("/proc/net/nf_conntrack").read_text().splitlines():
        fields = line.split()
        if f"dst={ip}" in fields and f"dport={port}" in fields and "TIME_WAIT" in fields:
            found.append(int(fields[4]))
    return found


def test_dyno_flows_leave_the_conntrack_table_sooner_than_the_hosts(
        installation: Installation) -> None:
    """TIME_WAIT entries of flows to a dyno last 10 s, not the host's 120 s, while the host's
    own flows keep the host's setting."""
    ip, port = installation.start("web1", 6), installation.settings.dyno_port
    with socket.create_server(("127.0.0.1", 0)) as local:
        local_port = local.getsockname()[1]
        for address, target in ((ip, port), ("127.0.0.1", local_port)):
            client = socket.create_connection((address, target), timeout=5)
            if target == local_port:
                local.accept()[0].close()
            client.recv(1)  # the server closed: this side answers, then closes
            client.close()
        deadline = time.monotonic() + 10
        while not (time_wait_left(ip, port) and time_wait_left("127.0.0.1", local_port)):
            assert time.monotonic() < deadline, "no TIME_WAIT entries"
            time.sleep(0.1)
    host_setting = int(Path("/proc/sys/net/netfilter/nf_conntrack_tcp_timeout_time_wait")
                       .read_text())
    assert max(time_wait_left(ip, port)) <= firewall.TCP_TIMEOUTS["time_wait"]
    if host_setting > firewall.TCP_TIMEOUTS["time_wait"] + 5:
        assert max(time_wait_left("127.0.0.1", local_port)) > firewall.TCP_TIMEOUTS["time_wait"]


def nft_table(family: str, name: str) -> str:
    return subprocess.run(["nft", "list", "table", family, name], capture_output=True,
                          text=True, check=True).stdout


def test_paas_down_removes_the_platforms_table_and_leaves_the_hosts_alone(
        tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    (tmp_path / "layer").mkdir(mode=0o755)
    settings = Settings(home=tmp_path / "home", dyno_subnet=free_subnet(),
                        dyno_host_ports="6380")
    installation = Installation(Runtime(settings), settings, tmp_path / "layer")
    other = f"hosttest_{uuid.uuid4().hex[:8]}"  # someone else's rules on this host
    firewall.nft_script(
        f"add table inet {other}\n"
        f"add set inet {other} ports {{ type inet_service; }}\n"
        f"add element inet {other} ports {{ 22 }}\n"
        f"add chain inet {other} input {{ type filter hook input priority 10; policy accept; }}\n"
        f"add rule inet {other} input tcp dport @ports counter accept\n")
    try:
        before = nft_table("inet", other)
        network.prepare_host(settings)  # what `paas up` does
        network.prepare_host(settings)  # twice: the same table
        installation.start("web1", 5)
        sets = firewall.Table(settings.install_id).sets()
        assert sets is not None and sets["host_ports"] == [6380]
        bridge = network.bridge_name(settings.install_id, 5)
        assert sets["dyno_bridges"] == [bridge]
        assert sets["gateways"] == [[bridge, gateway(settings, 5)]]
        rules = nft_table("inet", firewall.Table(settings.install_id).name)
        assert rules.count("counter packets") == 3, rules  # not added twice
        installation.runtime.remove_dyno("web1")
        assert installation.runtime.remove_idle_bridges() == [bridge]  # its elements go too
        assert firewall.Table(settings.install_id).sets() == {
            "dyno_bridges": [], "same_bridge": [], "gateways": [], "host_ports": [6380],
            "router_ports": sorted({settings.router_port, settings.router_tls_port})}
        installation.start("web2", 5)

        down = subprocess.run([PAAS, "down"], capture_output=True, text=True, timeout=120,
                              env={**os.environ, "PAAS_HOME": str(settings.home),
                                   "PAAS_DYNO_SUBNET": settings.dyno_subnet})
        assert down.returncode == 0, down.stderr
        assert firewall.Table(settings.install_id).sets() is None
        assert ("inet", other) in firewall.tables()
        assert nft_table("inet", other) == before
    finally:
        installation.runtime.teardown()
        firewall.nft_script(f"delete table inet {other}\n", check=False)
    assert ("inet", other) not in firewall.tables()


def host_rules() -> list[dict]:
    return json.loads(network.ip_cmd("-j", "rule", "show").stdout)


def local_lookups() -> set[int]:
    return {rule["priority"] for rule in host_rules() if rule.get("table") == "local"}


def test_teardown_removes_the_policy_rules_of_earlier_versions(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", dyno_subnet=free_subnet())
    bridge = network.bridge_name(settings.install_id, 9)
    before = local_lookups()  # an installation of an earlier version may have moved it
    old = [("99", "tcp", "dport", "5432", "lookup", "local"),
           ("100", "tcp", "sport", "5000", "lookup", "local"),
           ("101", "udp", "prohibit"), ("101", "tcp", "prohibit")]
    for pref, protocol, *rest in old:
        network.ip_cmd("rule", "add", "pref", pref, "iif", bridge, "ipproto", protocol, *rest)
    # and the local lookup moved behind them, once per host, as those versions did
    network.ip_cmd("rule", "add", "pref", "1000", "lookup", "local", check=False)
    network.ip_cmd("rule", "del", "pref", "0", "lookup", "local", check=False)
    try:
        Runtime(settings).teardown()
        rules = host_rules()
        assert not [rule for rule in rules if rule.get("iif") == bridge]
        if not network._legacy_rules(rules):  # no other installation of an old version left
            assert local_lookups() == {0}
    finally:
        for pref in ("99", "100", "101"):
            network.ip_cmd("rule", "del", "pref", pref, "iif", bridge, check=False)
        restore_local_lookups(before)


def restore_local_lookups(wanted: set[int]) -> None:
    """As it was: another installation's isolation may need the local lookup moved."""
    for priority in sorted(wanted - local_lookups()):
        network.ip_cmd("rule", "add", "pref", str(priority), "lookup", "local")
    for priority in sorted(local_lookups() - wanted):
        network.ip_cmd("rule", "del", "pref", str(priority), "lookup", "local")
