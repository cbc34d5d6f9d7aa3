"""The host's network as the platform needs it: its ports free (or held by this platform), its
dyno subnet clear of the host's interfaces and routes, PAAS_DOMAIN resolving to this host."""

from __future__ import annotations

import ipaddress
import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from paas import sockets
from paas.doctor import Finding, passed, problem
from paas.runtime import network
from paas.settings import Settings

AREA = "network"


def check(settings: Settings) -> Iterator[Finding]:
    for name, port in _ports(settings).items():
        if port:  # 0: off (PAAS_SSH_PORT)
            yield _port(settings, name, port)
    yield _subnet(settings)
    yield _domain(settings)


def _ports(settings: Settings) -> dict[str, int]:
    return {"PAAS_API_PORT": settings.api_port, "PAAS_ROUTER_PORT": settings.router_port,
            "PAAS_ROUTER_TLS_PORT": settings.router_tls_port,
            "PAAS_ROUTER_CONTROL_PORT": settings.router_control_port,
            "PAAS_SSH_PORT": settings.ssh_port}


def _port(settings: Settings, name: str, port: int) -> Finding:
    inodes = sockets.listening_inodes({port})
    if not inodes:
        return passed(AREA, name, f"port {port} is free")
    owners = sockets.socket_holders(inodes)
    if any(_is_ours(settings, pid) for pid in owners):
        return passed(AREA, name, f"port {port} is this platform's")
    who = ", ".join(f"{_comm(pid)} (pid {pid})" for pid in sorted(owners)[:3]) or "a process"
    return problem(AREA, name, f"port {port} is taken by {who}",
                   f"stop it, or set {name} to a free port")


def _is_ours(settings: Settings, pid: int) -> bool:
    """A process of this installation: started with its PAAS_HOME in its environment, or
    (nginx, which clears its environment) on its command line."""
    home = str(settings.home)
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False
    return home in cmdline or f"PAAS_HOME={home}".encode() in environ


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def _subnet(settings: Settings) -> Finding:
    subnet = ipaddress.IPv4Network(settings.dyno_subnet)
    ours = (network.bridge_name(settings.install_id, 0)[:-1], f"v{settings.install_id}")
    for device, prefix in _host_networks():
        if device.startswith(ours) or not prefix.overlaps(subnet):
            continue
        return problem(AREA, "PAAS_DYNO_SUBNET",
                       f"{subnet} overlaps {prefix} on {device}: dynos could not reach it, "
                       "or it them", "set PAAS_DYNO_SUBNET to a /16 no interface or route of "
                       "this host uses, like 10.213.0.0/16")
    return passed(AREA, "PAAS_DYNO_SUBNET", f"{subnet} is clear of the host's networks")


def _host_networks() -> Iterator[tuple[str, ipaddress.IPv4Network]]:
    """(device, network) of every IPv4 address and route of the host."""
    for link in _ip_json("-4", "addr", "show"):
        for address in link.get("addr_info", []):
            yield link["ifname"], ipaddress.IPv4Network(
                f"{address['local']}/{address['prefixlen']}", strict=False)
    for route in _ip_json("-4", "route", "show", "table", "all"):
        dst = route.get("dst", "")
        if dst and dst != "default" and route.get("type", "unicast") == "unicast":
            yield route.get("dev", "?"), ipaddress.IPv4Network(dst, strict=False)


def _ip_json(*args: str) -> list[dict[str, Any]]:
    result = subprocess.run(["ip", "-j", *args], capture_output=True, text=True, timeout=10,
                            check=False)
    return json.loads(result.stdout) if result.returncode == 0 and result.stdout.strip() else []


def _domain(settings: Settings) -> Finding:
    domain = settings.domain
    if domain == "localhost" or domain.endswith(".localhost"):
        return passed(AREA, "PAAS_DOMAIN", f"{domain}: *.localhost is loopback (RFC 6761)")
    name = f"paas-doctor.{domain}"
    try:
        found = {str(info[4][0])
                 for info in socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)}
    except OSError as error:
        return problem(AREA, "PAAS_DOMAIN", f"{name} does not resolve ({error.strerror}): "
                       f"apps at <app>.{domain} cannot be reached by name",
                       f"add a wildcard DNS record *.{domain} for this host's address",
                       fatal=False)
    local = {a["local"] for link in _ip_json("addr", "show") for a in link.get("addr_info", [])}
    foreign = sorted(a for a in found
                     if a not in local and not ipaddress.ip_address(a).is_loopback)
    if foreign:
        return problem(AREA, "PAAS_DOMAIN", f"{name} resolves to {', '.join(foreign)}, not an "
                       "address of this host", f"point *.{domain} at this host", fatal=False)
    return passed(AREA, "PAAS_DOMAIN", f"*.{domain} resolves to this host")
