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
- Conntrack: a `ct state` rule makes the kernel track every flow of the host. TCP flows with
  a dyno and to the router's ports get their own timeouts (`ct timeout platform_tcp`: TIME_WAIT
  10 s instead of the host's 120 s), so the router's connection churn cannot fill the host's
  table; the host's other traffic keeps the host's settings.

The table is built by one `nft -f` transaction of `add` commands and chain flushes, so it is
atomic and idempotent: `paas up` and every dyno start run it (two runs at once give the same
table), and set elements (the bridges) survive it. Nothing outside this table is touched.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
from dataclasses import dataclass

from paas.errors import Unavailable

FAMILY = "inet"
TCP_TIMEOUT = "platform_tcp"
# Seconds. TIME_WAIT and CLOSE are what churn piles up (a new connection per request): at
# 5,000 connections/s, 10 s keeps 50,000 entries, well under the 262,144 the table holds.
# ESTABLISHED stays above any idle time of the router's (upstream keepalive_timeout 60 s,
# PAAS_ROUTER_TIMEOUT) yet lets a flow whose dyno vanished go within the hour, not 5 days.
# Set once: `add ct timeout` keeps an existing object as it is.
TCP_TIMEOUTS = {"syn_sent": 30, "syn_recv": 30, "established": 3600, "fin_wait": 30,
                "close_wait": 30, "last_ack": 30, "time_wait": 10, "close": 10}
# Sets an unconfirmed flow's timeouts: in the hook where its first packet is tracked (output
# for the host's own connections, input or forward for the others).
SHORT_TIMEOUTS = f'meta nfproto ipv4 meta l4proto tcp ct state new ct timeout set "{TCP_TIMEOUT}"'


@dataclass(frozen=True)
class Table:
    install_id: str
    host_ports: tuple[int, ...] = ()  # PAAS_DYNO_HOST_PORTS
    router_ports: tuple[int, ...] = ()

    @property
    def name(self) -> str:
        return f"paas_{self.install_id}"

    @property
    def ref(self) -> str:
        return f"{FAMILY} {self.name}"

    def script(self) -> str:
        """The whole table as `nft -f` input. Chains are flushed and filled again, sets are
        created if missing (their elements kept), except the port sets, set from `self`."""
        t = self.ref
        policy = ", ".join(f"{state}: {seconds}" for state, seconds in TCP_TIMEOUTS.items())
        lines = [
            f"add table {t}",
            f"add ct timeout {t} {TCP_TIMEOUT} "
            f"{{ protocol tcp; l3proto ip; policy = {{ {policy} }}; }}",
            f"add set {t} dyno_bridges {{ type ifname; }}",
            f"add set {t} same_bridge {{ type ifname . ifname; }}",
            f"add set {t} gateways {{ type ifname . ipv4_addr; }}",
            *_port_set(t, "host_ports", self.host_ports),
            *_port_set(t, "router_ports", self.router_ports),
            *_chain(t, "from_dyno", None, [
                "ct state established,related accept",
                f"iifname . ip daddr @gateways tcp dport @host_ports {SHORT_TIMEOUTS} accept",
                "counter drop",
            ]),
            *_chain(t, "input", "type filter hook input priority filter; policy accept;", [
                "iifname @dyno_bridges jump from_dyno",
                f"tcp dport @router_ports {SHORT_TIMEOUTS}",
            ]),
            *_chain(t, "output", "type filter hook output priority filter; policy accept;", [
                f"oifname @dyno_bridges {SHORT_TIMEOUTS}",
                f"tcp dport @router_ports {SHORT_TIMEOUTS}",  # loopback clients
            ]),
            *_chain(t, "forward", "type filter hook forward priority filter; policy accept;", [
                f"iifname . oifname @same_bridge {SHORT_TIMEOUTS}",
                "iifname . oifname @same_bridge accept",
                "iifname @dyno_bridges counter drop",
                "oifname @dyno_bridges counter drop",
            ]),
        ]
        return "\n".join(lines) + "\n"

    def install(self) -> None:
        """Creates or repairs the table (`paas up`)."""
        nft_script(self.script())

    def admit_bridge(self, bridge: str, gateway: str) -> None:
        """Puts `bridge` under the table's rules, before any dyno joins it: one transaction
        that also makes the table whole and its port sets the settings'."""
        elements = self._bridge_elements(bridge, gateway)
        nft_script(self.script() + "".join(f"add {element}\n" for element in elements))

    def forget_bridge(self, bridge: str) -> None:
        """Drops `bridge`'s elements (the bridge is gone). A missing table or element is fine:
        one command each, since a transaction fails whole."""
        sets = self.sets()
        if sets is None:
            return
        gateways = [address for name, address in sets.get("gateways", []) if name == bridge]
        for element in self._bridge_elements(bridge, gateways[0] if gateways else None):
            nft_script(f"delete {element}\n", check=False)

    def remove(self) -> None:
        """`paas down`: the table goes, and with it every rule of this installation."""
        if self.sets() is not None:
            nft_script(f"delete table {self.ref}\n", check=False)

    def sets(self) -> dict[str, list] | None:
        """The table's sets and their elements ({name: [elements]}), or None if absent."""
        result = _nft(["-j", "list", "table", FAMILY, self.name])
        if result.returncode != 0:
            return None
        return {item["set"]["name"]: [entry["concat"] if isinstance(entry, dict) else entry
                                      for entry in item["set"].get("elem", [])]
                for item in json.loads(result.stdout)["nftables"] if "set" in item}

    def _bridge_elements(self, bridge: str, gateway: str | None) -> list[str]:
        """`element ...` of `bridge` in each set, for `add` or `delete`."""
        t = self.ref
        elements = [f'element {t} dyno_bridges {{ "{bridge}" }}',
                    f'element {t} same_bridge {{ "{bridge}" . "{bridge}" }}']
        if gateway is not None:
            address = ipaddress.IPv4Address(gateway)
            elements.append(f'element {t} gateways {{ "{bridge}" . {address} }}')
        return elements


def _port_set(table: str, name: str, ports: tuple[int, ...]) -> list[str]:
    listed = ", ".join(str(port) for port in sorted(set(ports)))
    return [f"add set {table} {name} {{ type inet_service; }}", f"flush set {table} {name}",
            *([f"add element {table} {name} {{ {listed} }}"] if listed else [])]


def _chain(table: str, name: str, base: str | None, rules: list[str]) -> list[str]:
    spec = f" {{ {base} }}" if base else ""
    return [f"add chain {table} {name}{spec}", f"flush chain {table} {name}",
            *(f"add rule {table} {name} {rule}" for rule in rules)]


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
