from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from paas.errors import Invalid
from paas.runtime.firewall import Table
from paas.runtime.network import app_network, bridge_name, next_free_ip, parse_ports, veth_name
from paas.runtime.oci import ContainerConfig, config_json


def test_each_app_gets_its_own_slash_24() -> None:
    assert app_network("10.213.0.0/16", 1) == ipaddress.IPv4Network("10.213.1.0/24")
    assert app_network("10.213.0.0/16", 250) == ipaddress.IPv4Network("10.213.250.0/24")
    with pytest.raises(Invalid):
        app_network("10.213.0.0/16", 0)
    with pytest.raises(Invalid):
        app_network("10.213.0.0/24", 1)


def test_interface_names_fit_the_kernel_limit() -> None:
    assert len(bridge_name("abcd", 250)) <= 15
    assert len(veth_name("abcd", "x" * 60)) <= 15
    assert veth_name("abcd", "web-1") != veth_name("abcd", "web-2")


def test_addresses_skip_the_gateway_and_used_ones() -> None:
    net = ipaddress.IPv4Network("10.0.3.0/24")
    assert next_free_ip(net, set()) == "10.0.3.2"
    assert next_free_ip(net, {"10.0.3.2", "10.0.3.3"}) == "10.0.3.4"


def test_addresses_rotate_so_a_freed_one_is_not_reused_at_once() -> None:
    net = ipaddress.IPv4Network("10.0.3.0/24")
    assert next_free_ip(net, set(), after="10.0.3.2") == "10.0.3.3"
    assert next_free_ip(net, {"10.0.3.3"}, after="10.0.3.2") == "10.0.3.4"
    assert next_free_ip(net, set(), after="10.0.3.254") == "10.0.3.2"


def test_config_drops_every_privilege() -> None:
    cfg = ContainerConfig(
        hostname="web-1",
        uid=10001,
        args=["/bin/true"],
        env={"A": "1"},
        app_source=Path("/x"),
        memory_mb=256,
        pids_limit=64,
        cgroups_path="/paas-abcd/web-1",
        netns_path="/var/run/netns/pabcd-web-1",
    )
    doc = config_json(cfg)
    process = doc["process"]
    assert process["user"]["uid"] == 10001
    assert process["noNewPrivileges"] is True
    assert all(caps == [] for caps in process["capabilities"].values())
    assert doc["root"]["readonly"] is True
    assert {"type": "network", "path": "/var/run/netns/pabcd-web-1"} in doc["linux"]["namespaces"]
    assert doc["linux"]["resources"]["memory"]["limit"] == 256 * 1024 * 1024
    assert "mount" in doc["linux"]["seccomp"]["syscalls"][0]["names"]
    assert "A=1" in process["env"]


def test_host_ports_the_operator_opens_to_dynos() -> None:
    assert parse_ports("") == []
    assert parse_ports("6380, 5432 5432") == [5432, 6380]
    for bad in ("postgres", "0", "70000", "-1"):
        with pytest.raises(Invalid, match=r"PAAS_DYNO_HOST_PORTS: .* is not a TCP port"):
            parse_ports(f"5432,{bad}")


def test_the_firewall_script_sets_the_ports_it_is_given_and_keeps_the_bridges() -> None:
    script = Table("abcd", host_ports=(6380, 5432, 5432), router_ports=(80,)).script()
    assert "add element inet paas_abcd host_ports { 5432, 6380 }" in script
    assert "flush set inet paas_abcd host_ports" in script
    assert "flush set inet paas_abcd dyno_bridges" not in script  # admitted bridges stay
    assert "add element inet paas_abcd router_ports { 80 }" in script
    # a chain is declared before the rule that jumps to it, in the same transaction
    assert script.index("add chain inet paas_abcd from_dyno") < script.index("jump from_dyno")
    assert "add element inet paas_abcd host_ports" not in Table("abcd").script()  # none open
