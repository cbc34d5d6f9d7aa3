"""Per-app bridges and per-dyno network namespaces, with iproute2.

No default route is installed in a dyno: it reaches its own /24 only, and the host reaches
every dyno through the app bridges it owns. What a dyno may send to the host and to other
dynos is decided by the platform's nftables table (`isolate_bridge`, paas/runtime/firewall.py).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from paas.errors import Invalid, Permanent, Unavailable
from paas.runtime import firewall
from paas.settings import Settings

NETNS_DIR = Path("/var/run/netns")
TW_REUSE = Path("/proc/sys/net/ipv4/tcp_tw_reuse")
ADDRESS_SET_BY_USER = "3"  # /sys/class/net/<link>/addr_assign_type after `ip link set address`
# The top of each app's /24 is kept for the add-on servers attached to the app (.240-.254):
# dynos never take those addresses, so an add-on's address is known before it runs.
ADDON_FIRST_HOST = 240
ADDON_LINKS_PER_APP = 255 - ADDON_FIRST_HOST


@dataclass(frozen=True)
class DynoNet:
    netns: str
    veth: str
    ip: str
    prefix: int

    @property
    def netns_path(self) -> str:
        return str(NETNS_DIR / self.netns)


def ip_cmd(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise Unavailable(f"ip {' '.join(args)} failed: {result.stderr.strip()}")
    return result


def app_network(subnet: str, app_index: int) -> ipaddress.IPv4Network:
    if not 1 <= app_index <= 250:
        raise Invalid(f"app_index must be within 1..250, got {app_index}")
    net = ipaddress.ip_network(subnet)
    if not isinstance(net, ipaddress.IPv4Network) or net.prefixlen > 16:
        raise Invalid(f"dyno subnet must be an IPv4 /16 or larger, got {subnet}")
    return ipaddress.IPv4Network((int(net.network_address) + app_index * 256, 24))


def bridge_name(install_id: str, app_index: int) -> str:
    return f"pb{install_id}{app_index}"


def netns_name(install_id: str, dyno_id: str) -> str:
    return f"p{install_id}-{dyno_id}"


def veth_name(install_id: str, dyno_id: str) -> str:
    return f"v{install_id}{hashlib.sha256(dyno_id.encode()).hexdigest()[:8]}"


def next_free_ip(network: ipaddress.IPv4Network, used: set[str], after: str | None = None) -> str:
    """The first free address after `after`, wrapping around. Rotating, rather than taking
    the lowest, keeps a just-freed address out of use for a while: the router may still hold a
    keep-alive connection to it, and the host a neighbour entry for the old dyno."""
    hosts = [str(host) for host in list(network.hosts())[1:]
             if int(host) - int(network.network_address) < ADDON_FIRST_HOST]
    start = hosts.index(after) + 1 if after in hosts else 0
    for host in hosts[start:] + hosts[:start]:
        if host not in used:
            return host
    raise Unavailable(f"no free address left in {network}")


def addon_ip(network: ipaddress.IPv4Network, index: int) -> str:
    """The address of an app's index-th attached add-on on the app's network."""
    if not 0 <= index < ADDON_LINKS_PER_APP:
        raise Invalid(f"an app has at most {ADDON_LINKS_PER_APP} add-ons attached")
    return str(network.network_address + ADDON_FIRST_HOST + index)


def link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def interfaces_on(network: ipaddress.IPv4Network) -> list[str]:
    """Host interfaces with an address inside `network`."""
    found = []
    for line in ip_cmd("-o", "-4", "addr", "show").stdout.splitlines():
        fields = line.split()
        if "inet" in fields:
            address = ipaddress.ip_interface(fields[fields.index("inet") + 1])
            if address.ip in network:
                found.append(fields[1])
    return found


def ensure_bridge(name: str, network: ipaddress.IPv4Network) -> None:
    others = [iface for iface in interfaces_on(network) if iface != name]
    if others:
        # Two interfaces on one subnet: the host would route to whichever came first.
        raise Permanent(
            f"the dyno network {network} is already used by {', '.join(others)} on this host: "
            "set PAAS_DYNO_SUBNET to a free range, or run `paas down` for the installation "
            "that left it"
        )
    if not link_exists(name):
        result = ip_cmd("link", "add", "name", name, "type", "bridge", check=False)
        if result.returncode != 0 and not link_exists(name):
            raise Unavailable(f"cannot create bridge {name}: {result.stderr.strip()}")
    gateway = next(iter(network.hosts()))
    ip_cmd("addr", "replace", f"{gateway}/{network.prefixlen}", "dev", name)
    pin_address(name)
    ip_cmd("link", "set", name, "up")


def pin_address(bridge: str) -> None:
    """A bridge whose MAC address was never set takes the lowest of its ports' and changes it
    when a dyno's veth joins or leaves. The dynos on it keep sending to the gateway's old MAC
    for seconds: packets dropped, requests in flight hang (H12s during deploys). Set once, it
    stays."""
    assign_type = Path(f"/sys/class/net/{bridge}/addr_assign_type")
    if assign_type.read_text().strip() != ADDRESS_SET_BY_USER:
        address = Path(f"/sys/class/net/{bridge}/address").read_text().strip()
        ip_cmd("link", "set", bridge, "address", address)


def create_dyno_net(install_id: str, dyno_id: str, bridge: str, ip: str, prefix: int) -> DynoNet:
    net = DynoNet(netns_name(install_id, dyno_id), veth_name(install_id, dyno_id), ip, prefix)
    ip_cmd("netns", "add", net.netns)
    ip_cmd("-n", net.netns, "link", "set", "lo", "up")
    ip_cmd("link", "add", net.veth, "type", "veth", "peer", "name", "eth0", "netns", net.netns)
    ip_cmd("-n", net.netns, "addr", "add", f"{ip}/{prefix}", "dev", "eth0")
    ip_cmd("-n", net.netns, "link", "set", "eth0", "up")
    ip_cmd("link", "set", net.veth, "master", bridge)
    disable_ipv6(net.veth)
    ip_cmd("link", "set", net.veth, "up")
    # The address may have been a removed dyno's: forget its MAC, or the host (the router,
    # health checks) keeps sending to it for seconds.
    ip_cmd("neigh", "del", ip, "dev", bridge, check=False)
    return net


def add_link(netns: str, veth: str, inner: str, bridge: str, ip: str, prefix: int) -> None:
    """One more interface in an existing namespace (an add-on server's), on an app bridge."""
    ip_cmd("link", "add", veth, "type", "veth", "peer", "name", inner, "netns", netns)
    ip_cmd("-n", netns, "addr", "add", f"{ip}/{prefix}", "dev", inner)
    ip_cmd("-n", netns, "link", "set", inner, "up")
    ip_cmd("link", "set", veth, "master", bridge)
    disable_ipv6(veth)
    ip_cmd("link", "set", veth, "up")
    ip_cmd("neigh", "del", ip, "dev", bridge, check=False)


def create_netns(name: str) -> None:
    if not (NETNS_DIR / name).exists():
        ip_cmd("netns", "add", name)
    ip_cmd("-n", name, "link", "set", "lo", "up")


def delete_dyno_net(netns: str, veth: str) -> None:
    if link_exists(veth):
        ip_cmd("link", "delete", veth, check=False)
    if (NETNS_DIR / netns).exists():
        ip_cmd("netns", "delete", netns, check=False)


def links_with_prefix(prefix: str, master: str = "") -> list[str]:
    """The names of the host's links that start with prefix (on bridge `master`, if given)."""
    result = ip_cmd("-j", "link", "show", *(("master", master) if master else ()), check=False)
    if result.returncode != 0 or not result.stdout.strip():
        return []
    return [
        link["ifname"] for link in json.loads(result.stdout) if link["ifname"].startswith(prefix)
    ]


def netns_with_prefix(prefix: str) -> list[str]:
    if not NETNS_DIR.is_dir():
        return []
    return sorted(entry.name for entry in NETNS_DIR.iterdir() if entry.name.startswith(prefix))


def teardown_network(install_id: str) -> None:
    for name in netns_with_prefix(f"p{install_id}-") + netns_with_prefix(f"b{install_id}-"):
        ip_cmd("netns", "delete", name, check=False)
    for name in links_with_prefix(f"v{install_id}"):
        ip_cmd("link", "delete", name, check=False)
    for name in links_with_prefix(f"pb{install_id}"):
        ip_cmd("link", "delete", name, check=False)
    firewall.Table(install_id).remove()
    remove_legacy_rules(install_id)


# ---- keeping dynos off the host's services -------------------------------------------------
# A packet from a dyno to any address of the host (its bridge's gateway) would be delivered to
# every service listening on 0.0.0.0. The platform's nftables table lets through only replies
# to connections the host opened and the host ports the operator opened; a bridge joins its
# sets before any dyno joins the bridge.


def firewall_table(settings: Settings) -> firewall.Table:
    return firewall.Table(settings.install_id, tuple(parse_ports(settings.dyno_host_ports)),
                          (settings.router_port, settings.router_tls_port))


def prepare_host(settings: Settings) -> None:
    """`paas up`: the platform's firewall table (the bridges of dynos it adopts in it), no
    policy rule of an earlier version, and TIME_WAIT reuse towards the dynos."""
    remove_legacy_rules(settings.install_id)
    firewall_table(settings).install(app_bridges(settings))
    reuse_time_wait()


def isolate_bridge(settings: Settings, bridge: str, network: ipaddress.IPv4Network) -> None:
    firewall_table(settings).install({**app_bridges(settings), bridge: gateway_of(network)})
    disable_ipv6(bridge)
    reuse_time_wait()


def reuse_time_wait(setting: Path = TW_REUSE) -> bool:
    """net.ipv4.tcp_tw_reuse=1 in the host's namespace (the kernel's default, 2, reuses for
    loopback only). The router and health checks connect to dynos across the bridges, and an
    app server that closes every connection (gunicorn's sync worker) leaves the host a
    TIME_WAIT per request for 60 s: the ~28,000 ephemeral ports towards one dyno run out
    within seconds at a few thousand requests/s, and every connect() then scans the range
    (bench/throughput.py: the router served 445 req/s so, 2,698 with reuse). Reuse applies to
    the host's outgoing connections only, TCP timestamps telling old segments from new.
    True if changed."""
    if setting.read_text().strip() == "1":
        return False
    setting.write_text("1")
    return True


def repair_firewall(settings: Settings) -> list[str]:
    """The agent's check: the table made whole again if it is not (someone flushed the host's
    ruleset); returns what was wrong."""
    table, bridges = firewall_table(settings), app_bridges(settings)
    faults = table.faults(bridges)
    if faults:
        table.install(bridges)
    return faults


def app_bridges(settings: Settings) -> dict[str, str]:
    """This installation's app bridges on the host, each with its gateway."""
    prefix = bridge_name(settings.install_id, 0)[:-1]
    found = {}
    for name in links_with_prefix(prefix):
        slot = name[len(prefix):]
        if slot.isdigit() and 1 <= int(slot) <= 250:
            found[name] = gateway_of(app_network(settings.dyno_subnet, int(slot)))
    return found


def gateway_of(network: ipaddress.IPv4Network) -> str:
    """The host's address on an app's network: its bridge's."""
    return str(next(iter(network.hosts())))


def disable_ipv6(link: str) -> None:
    """No link-local IPv6 address on the host's side of a dyno's link: nothing of the host
    answers a dyno over IPv6, whatever the rules."""
    setting = Path(f"/proc/sys/net/ipv6/conf/{link}/disable_ipv6")
    if setting.exists():
        setting.write_text("1")


def parse_ports(text: str) -> list[int]:
    """PAAS_DYNO_HOST_PORTS: "5432, 6380"."""
    ports = []
    for entry in text.replace(",", " ").split():
        if not entry.isdigit() or not 0 < int(entry) < 65536:
            raise Invalid(f"PAAS_DYNO_HOST_PORTS: {entry!r} is not a TCP port; list ports like "
                          "5432, 6380")
        ports.append(int(entry))
    return sorted(set(ports))


def delete_bridge(install_id: str, bridge: str) -> None:
    ip_cmd("link", "delete", bridge, check=False)
    firewall.Table(install_id).forget_bridge(bridge)


# ---- leftovers of the policy routing of earlier versions -----------------------------------
# Before the nftables table, per-bridge policy rules (`pref 99|100|101 iif <bridge> ...`) kept
# dynos off the host, behind the kernel's local-table lookup moved from priority 0 to 1000.

LEGACY_PREFS = (99, 100, 101)
LEGACY_LOCAL_PREF = 1000


def remove_legacy_rules(install_id: str) -> None:
    """This installation's old bridge rules; and once no installation on the host has any
    left, the local lookup back at priority 0 (added before the moved one goes, so the host
    never misses it)."""
    for bridge in {rule.get("iif", "") for rule in _legacy_rules(_rules())}:
        if bridge.startswith(f"pb{install_id}"):
            for pref in LEGACY_PREFS:
                _delete_rules(pref, bridge)
    rules = _rules()
    if _legacy_rules(rules) or not _has_rule(rules, LEGACY_LOCAL_PREF, table="local"):
        return
    if not _has_rule(rules, 0, table="local"):
        ip_cmd("rule", "add", "pref", "0", "lookup", "local")
    ip_cmd("rule", "del", "pref", str(LEGACY_LOCAL_PREF), "lookup", "local", check=False)


def _legacy_rules(rules: list[dict]) -> list[dict]:
    return [rule for rule in rules
            if rule.get("priority") in LEGACY_PREFS and rule.get("iif", "").startswith("pb")]


def _rules() -> list[dict]:
    result = ip_cmd("-j", "rule", "show", check=False)
    return json.loads(result.stdout) if result.returncode == 0 and result.stdout.strip() else []


def _has_rule(rules: list[dict], priority: int, **match: str) -> bool:
    return any(rule.get("priority") == priority
               and all(rule.get(key) == value for key, value in match.items())
               for rule in rules)


def _delete_rules(pref: int, bridge: str) -> None:
    while ip_cmd("rule", "del", "pref", str(pref), "iif", bridge, check=False).returncode == 0:
        pass


# ---- build networks ----------------------------------------------------------------------
# A build runs in a namespace with nothing but its loopback, where its egress proxy listens
# (paas/runtime/buildnet.py): no veth, so no address of the host or of a dyno is reachable.


def build_netns_name(install_id: str, token: str) -> str:
    return f"b{install_id}-{token}"


def create_build_netns(name: str) -> str:
    ip_cmd("netns", "add", name)
    ip_cmd("-n", name, "link", "set", "lo", "up")
    return str(NETNS_DIR / name)


def delete_netns(name: str) -> None:
    if (NETNS_DIR / name).exists():
        ip_cmd("netns", "delete", name, check=False)
