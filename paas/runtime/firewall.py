"""The platform's own nftables table, `inet paas_<installid>`: what dynos may send to the host
and to each other.

- Input (a dyno's packet to any address of the host): replies to connections the host opened
  (the router, health checks) and, new, TCP to the ports the operator opened
  (PAAS_DYNO_HOST_PORTS) on the dyno's own gateway. Everything else is dropped, whatever its
  source port.
- Forward: one app's dynos share a bridge; with `bridge-nf-call-iptables` on, their bridged
  traffic passes this hook with the bridge as both interfaces (accepted; with it off it never
  comes here). Anything else routed from or into a dyno bridge (another app, the world) is
  dropped.
- Conntrack: TCP flows with a dyno get their own timeouts (`ct timeout dyno_tcp`: TIME_WAIT
  10 s instead of the host's 120 s), so connection churn to dynos cannot fill the host's table;
  the host's own traffic keeps the host's settings.

The table is built by one `nft -f` transaction of `add` commands and chain flushes, so it is
atomic and idempotent: `paas up` and every dyno start run it (two runs at once give the same
table), and set elements (the bridges) survive it. Nothing outside this table is touched.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
from collections.abc import Iterable

from paas.errors import Unavailable

FAMILY = "inet"
TCP_TIMEOUT = "dyno_tcp"
# Seconds. TIME_WAIT and CLOSE are what churn piles up (a new connection per request): at
# 5,000 connections/s, 10 s keeps 50,000 entries, well under the 262,144 the table holds.
# ESTABLISHED stays above any idle time of the router's (upstream keepalive_timeout 60 s,
# PAAS_ROUTER_TIMEOUT) yet lets a flow whose dyno vanished go within the hour, not 5 days.
TCP_TIMEOUTS = {"syn_sent": 30, "syn_recv": 30, "established": 3600, "fin_wait": 30,
                "close_wait": 30, "last_ack": 30, "time_wait": 10, "close": 10}


def table_name(install_id: str) -> str:
    return f"paas_{install_id}"


def table_script(install_id: str, host_ports: Iterable[int]) -> str:
    """The whole table as `nft -f` input. Chains are flushed and filled again, sets are
    created if missing (their elements kept), except `host_ports`, set to `host_ports`."""
    t = f"{FAMILY} {table_name(install_id)}"
    policy = ", ".join(f"{state}: {seconds}" for state, seconds in TCP_TIMEOUTS.items())
    ports = ", ".join(str(port) for port in sorted(set(host_ports)))
    dyno_tcp = f'meta nfproto ipv4 meta l4proto tcp ct state new ct timeout set "{TCP_TIMEOUT}"'
    lines = [
        f"add table {t}",
        f"add ct timeout {t} {TCP_TIMEOUT} "
        f"{{ protocol tcp; l3proto ip; policy = {{ {policy} }}; }}",
        f"add set {t} dyno_bridges {{ type ifname; }}",
        f"add set {t} same_bridge {{ type ifname . ifname; }}",
        f"add set {t} gateways {{ type ifname . ipv4_addr; }}",
        f"add set {t} host_ports {{ type inet_service; }}",
        f"flush set {t} host_ports",
        *([f"add element {t} host_ports {{ {ports} }}"] if ports else []),
        *_chain(t, "from_dyno", None, [
            "ct state established,related accept",
            f"iifname . ip daddr @gateways tcp dport @host_ports {dyno_tcp} accept",
            "counter drop",
        ]),
        *_chain(t, "input", "type filter hook input priority filter; policy accept;", [
            "iifname @dyno_bridges jump from_dyno",
        ]),
        *_chain(t, "output", "type filter hook output priority filter; policy accept;", [
            f"oifname @dyno_bridges {dyno_tcp}",
        ]),
        *_chain(t, "forward", "type filter hook forward priority filter; policy accept;", [
            f"iifname . oifname @same_bridge {dyno_tcp}",
            "iifname . oifname @same_bridge accept",
            "iifname @dyno_bridges counter drop",
            "oifname @dyno_bridges counter drop",
        ]),
    ]
    return "\n".join(lines) + "\n"


def _chain(table: str, name: str, base: str | None, rules: list[str]) -> list[str]:
    spec = f" {{ {base} }}" if base else ""
    return [f"add chain {table} {name}{spec}", f"flush chain {table} {name}",
            *(f"add rule {table} {name} {rule}" for rule in rules)]


def bridge_elements(install_id: str, bridge: str, gateway: str | None) -> list[str]:
    """`element ...` of `bridge` in each set, for `add` or `delete`."""
    t = f"{FAMILY} {table_name(install_id)}"
    elements = [f'element {t} dyno_bridges {{ "{bridge}" }}',
                f'element {t} same_bridge {{ "{bridge}" . "{bridge}" }}']
    if gateway is not None:
        elements.append(f'element {t} gateways {{ "{bridge}" . {ipaddress.IPv4Address(gateway)} }}')
    return elements


def install(install_id: str, host_ports: Iterable[int]) -> None:
    """Creates or repairs the table (`paas up`)."""
    nft_script(table_script(install_id, host_ports))


def admit_bridge(install_id: str, bridge: str, gateway: str, host_ports: Iterable[int]) -> None:
    """Puts `bridge` under the table's rules, before any dyno joins it: one transaction that
    also makes sure the table is whole and its host ports are the operator's."""
    elements = bridge_elements(install_id, bridge, gateway)
    nft_script(table_script(install_id, host_ports) + "".join(f"add {e}\n" for e in elements))


def forget_bridge(install_id: str, bridge: str) -> None:
    """Drops `bridge`'s elements (the bridge is gone). A missing table or element is fine:
    one command each, since a transaction fails whole."""
    sets = listed_table(install_id)
    if sets is None:
        return
    gateways = [address for name, address in sets.get("gateways", []) if name == bridge]
    for element in bridge_elements(install_id, bridge, gateways[0] if gateways else None):
        nft_script(f"delete {element}\n", check=False)


def remove(install_id: str) -> None:
    """`paas down`: the table goes, and with it every rule of this installation."""
    if listed_table(install_id) is not None:
        nft_script(f"delete table {FAMILY} {table_name(install_id)}\n", check=False)


def listed_table(install_id: str) -> dict[str, list] | None:
    """The table's sets and their elements ({name: [elements]}), or None if it is absent."""
    result = _nft(["-j", "list", "table", FAMILY, table_name(install_id)])
    if result.returncode != 0:
        return None
    return {item["set"]["name"]: [entry["concat"] if isinstance(entry, dict) else entry
                                  for entry in item["set"].get("elem", [])]
            for item in json.loads(result.stdout)["nftables"] if "set" in item}


def tables() -> list[tuple[str, str]]:
    """(family, name) of every nftables table on the host."""
    result = _nft(["-j", "list", "tables"])
    if result.returncode != 0:
        return []
    return [(item["table"]["family"], item["table"]["name"])
            for item in json.loads(result.stdout)["nftables"] if "table" in item]


def nft_script(script: str, check: bool = True) -> None:
    result = _nft(["-f", "-"], script)
    if check and result.returncode != 0:
        raise Unavailable(f"nft refused the platform's firewall rules: {result.stderr.strip()}")


def _nft(args: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(["nft", *args], input=stdin, capture_output=True, text=True,
                              check=False)
    except FileNotFoundError:
        raise Unavailable("nft is missing: dynos are isolated by nftables rules; install the "
                          "`nftables` package (`make setup` does) and try again") from None
