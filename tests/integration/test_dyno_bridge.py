"""An app's bridge keeps its MAC address while dynos come and go (root only, real kernel)."""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from paas.runtime import network
from tests.platform import free_subnet

LOW_MAC = "02:00:00:00:00:01"  # lower than any random one: a bridge would take it


@pytest.fixture
def bridge() -> Iterator[str]:
    name = f"pt{uuid.uuid4().hex[:8]}"
    network.ip_cmd("link", "add", "name", name, "type", "bridge")
    network.ip_cmd("link", "set", name, "up")
    yield name
    for port in (f"{name}a", f"{name}b"):
        network.ip_cmd("link", "delete", port, check=False)
    network.ip_cmd("link", "delete", name, check=False)


def mac(name: str) -> str:
    return Path(f"/sys/class/net/{name}/address").read_text().strip()


def add_port(bridge: str, name: str, address: str | None = None) -> None:
    network.ip_cmd("link", "add", name, *(("address", address) if address else ()),
                   "type", "veth", "peer", "name", f"{name}p")
    network.ip_cmd("link", "set", name, "master", bridge)
    network.ip_cmd("link", "set", name, "up")


def test_an_app_bridge_keeps_its_address_as_dynos_join_and_leave(bridge: str) -> None:
    subnet = ipaddress.ip_network(free_subnet())
    network.ensure_bridge(bridge, list(subnet.subnets(new_prefix=24))[-1])
    pinned = mac(bridge)
    add_port(bridge, f"{bridge}a")
    add_port(bridge, f"{bridge}b", LOW_MAC)
    assert mac(bridge) == pinned
    network.ip_cmd("link", "delete", f"{bridge}b")
    network.ip_cmd("link", "delete", f"{bridge}a")
    assert mac(bridge) == pinned


def test_an_unpinned_bridge_takes_a_joining_dyno_address(bridge: str) -> None:
    """Why the pin is needed: the kernel's own behaviour, which the dynos' ARP caches miss."""
    add_port(bridge, f"{bridge}a", LOW_MAC)
    assert mac(bridge) == LOW_MAC
