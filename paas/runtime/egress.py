"""A build's way out: an HTTP proxy whose listening socket is on the build's own loopback.

A build runs in a network namespace with nothing but its loopback (paas/runtime/buildnet.py),
so package managers (pip, npm, git over HTTP) reach registries only through this proxy, which
runs in the worker on the host's network. The host's own services, the dyno networks and other
builds stay out of reach: the proxy resolves every name itself and refuses any address of the
host, of a network attached to the host other than the way to a default route, and loopback,
link-local, multicast and reserved ranges.

These hosts have no iptables or nftables, so a NATed build namespace is not an option; the proxy
is also what makes the rules hold for names that resolve to internal addresses.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import selectors
import socket
import socketserver
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from paas.errors import Invalid

EGRESS_PORT = 3128
MAX_HEAD = 64 * 1024
CONNECT_TIMEOUT = 30.0
IDLE_TIMEOUT = 600.0
LOGGED_REFUSALS = 20
INTERFACES_TTL = 2.0
_ALLOW_ENTRY = re.compile(
    r"^(?:\[(?P<v6>[0-9a-fA-F:.]+(?:/\d+)?)\]|(?P<v4>[0-9.]+(?:/\d+)?))(?::(?P<port>\d+))?$")
_HOP_BY_HOP = {b"connection", b"keep-alive", b"proxy-connection", b"proxy-authorization"}

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Refused(Exception):
    """The destination is inside the platform or the host: the build may not reach it."""


@dataclass(frozen=True)
class Allowed:
    """An internal destination the operator opened to builds (PAAS_EGRESS_ALLOW)."""

    network: Network
    port: int | None = None

    def matches(self, address: Address, port: int) -> bool:
        return (address.version == self.network.version and address in self.network
                and self.port in (None, port))


def parse_allow(text: str) -> list[Allowed]:
    """`10.1.2.3:3141, 192.168.7.0/24, [fd00::1]:443`: addresses or networks, each with an
    optional port."""
    found = []
    for entry in text.replace(",", " ").split():
        match = _ALLOW_ENTRY.match(entry)
        try:
            if match is None:
                raise ValueError(entry)
            network = ipaddress.ip_network(match["v6"] or match["v4"], strict=False)
            port = int(match["port"]) if match["port"] else None
            if port is not None and not 0 < port < 65536:
                raise ValueError(entry)
        except ValueError:
            raise Invalid(f"PAAS_EGRESS_ALLOW: {entry!r} is not an address or network with an "
                          "optional port, like 10.1.2.3:3141 or 192.168.7.0/24") from None
        found.append(Allowed(network, port))
    return found


def refusal(address: Address, forbidden: Iterable[Network], port: int = 0,
            allowed: Iterable[Allowed] = ()) -> str | None:
    """Why a build may not connect to `address`, or None when it may."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    if any(entry.matches(address, port) for entry in allowed):
        return None
    if address.is_loopback or address.is_unspecified:
        return "a loopback address of the host"
    if address.is_link_local or address.is_multicast or address.is_reserved:
        return "a link-local, multicast or reserved address"
    for network in forbidden:
        if address.version == network.version and address in network:
            return "an address of the host or of one of its internal networks (dynos, builds)"
    return None


def host_networks() -> list[Network]:
    """Every address of the host, and every network attached to an interface that is not on
    the way to a default route: the dyno bridges and any other internal network."""
    forbidden: list[Network] = []
    outward = {route.get("dev") for family in ("-4", "-6")
               for route in _ip_json(family, "route", "show", "default")}
    for link in _ip_json("addr", "show"):
        for info in link.get("addr_info", []):
            interface = ipaddress.ip_interface(f"{info['local']}/{info['prefixlen']}")
            forbidden.append(ipaddress.ip_network(interface.ip))
            if link.get("ifname") not in outward:
                forbidden.append(interface.network)
    return forbidden


def _ip_json(*args: str) -> list[dict]:
    done = subprocess.run(["ip", "-j", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0 or not done.stdout.strip():
        return []
    return json.loads(done.stdout)


class Destinations:
    """Resolves a name and keeps only the addresses a build may reach."""

    def __init__(self, always_forbidden: Iterable[Network],
                 allowed: Iterable[Allowed] = ()) -> None:
        self.always_forbidden = list(always_forbidden)
        self.allowed = list(allowed)
        self._networks: list[Network] = []
        self._read_at = 0.0
        self._lock = threading.Lock()

    def forbidden(self) -> list[Network]:
        with self._lock:
            if time.monotonic() - self._read_at > INTERFACES_TTL:
                self._networks = host_networks()
                self._read_at = time.monotonic()
            return self.always_forbidden + self._networks

    def resolve(self, host: str, port: int) -> list[tuple]:
        try:
            found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as error:
            raise OSError(f"cannot resolve {host}: {error.strerror}") from None
        forbidden = self.forbidden()
        allowed, reasons = [], set()
        for family, kind, proto, _, sockaddr in found:
            reason = refusal(ipaddress.ip_address(sockaddr[0]), forbidden, port, self.allowed)
            if reason is None:
                allowed.append((family, kind, proto, sockaddr))
            else:
                reasons.add(f"{sockaddr[0]} is {reason}")
        if not allowed:
            raise Refused(f"{host}:{port}: {'; '.join(sorted(reasons))}")
        return allowed

    def connect(self, host: str, port: int) -> socket.socket:
        last: OSError | None = None
        for family, kind, proto, sockaddr in self.resolve(host, port):
            sock = socket.socket(family, kind, proto)
            sock.settimeout(CONNECT_TIMEOUT)
            try:
                sock.connect(sockaddr)
            except OSError as error:
                sock.close()
                last = error
                continue
            sock.settimeout(IDLE_TIMEOUT)
            return sock
        raise OSError(f"cannot connect to {host}:{port}: {last}")


class EgressProxy:
    """The proxy of one build, serving on `listener` (a socket in the build's namespace)."""

    def __init__(self, listener: socket.socket, destinations: Destinations,
                 log: Callable[[str], None]) -> None:
        host, port = listener.getsockname()[:2]
        self.url = f"http://{host}:{port}"
        self.destinations = destinations
        self.log = log
        self.refusals = 0
        self._server = _Server(listener, _Handler)
        self._server.proxy = self
        self._thread = threading.Thread(target=self._server.serve_until_woken, daemon=True,
                                        name="egress-proxy")

    @property
    def env(self) -> dict[str, str]:
        """What makes pip, npm, git, curl and urllib use the proxy inside the build."""
        names = ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY",
                 "npm_config_proxy", "npm_config_https_proxy")
        local = "localhost,127.0.0.1,::1"
        return {**dict.fromkeys(names, self.url), "no_proxy": local, "NO_PROXY": local}

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.wake()
        self._thread.join(timeout=5)
        self._server.server_close()
        self._server.close_connections()

    def refused(self, reason: str) -> None:
        self.refusals += 1
        if self.refusals <= LOGGED_REFUSALS:
            self.log(f"       Egress refused: {reason}")


class _Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    timeout = 0.0  # handle_request's, called when the listener is readable: never blocks
    proxy: EgressProxy

    def __init__(self, listener: socket.socket, handler: type) -> None:
        # The socket exists already (made in another namespace): skip TCPServer's own.
        socketserver.BaseServer.__init__(self, listener.getsockname(), handler)
        self.socket = listener
        self.open_sockets: set[socket.socket] = set()
        self.sockets_lock = threading.Lock()
        self._wake_read, self._wake_write = os.pipe()

    def serve_until_woken(self) -> None:
        """serve_forever, but stopped at once by wake(): shutdown() waits out serve_forever's
        poll interval (0.5 s), a quarter of a second of every build on average."""
        with selectors.DefaultSelector() as selector:
            selector.register(self, selectors.EVENT_READ)
            selector.register(self._wake_read, selectors.EVENT_READ)
            while True:
                for key, _ in selector.select():
                    if key.fileobj == self._wake_read:
                        return
                    self.handle_request()  # at once: timeout 0

    def wake(self) -> None:
        os.write(self._wake_write, b"x")

    def server_close(self) -> None:
        super().server_close()
        os.close(self._wake_read)
        os.close(self._wake_write)

    def track(self, sock: socket.socket, add: bool = True) -> None:
        with self.sockets_lock:
            (self.open_sockets.add if add else self.open_sockets.discard)(sock)

    def close_connections(self) -> None:
        with self.sockets_lock:
            for sock in self.open_sockets:
                _shutdown(sock)
            self.open_sockets.clear()


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        client: socket.socket = self.request
        proxy = self.server.proxy
        client.settimeout(IDLE_TIMEOUT)
        self.server.track(client)
        try:
            self._serve(client, proxy)
        except OSError:
            pass
        finally:
            self.server.track(client, add=False)

    def _serve(self, client: socket.socket, proxy: EgressProxy) -> None:
        request_line, rest = _read_head(client)
        if request_line is None:
            return _reply(client, 400, "the request head is malformed or too large")
        method, target, head = request_line
        try:
            host, port, first = _upstream_request(method, target, head, rest)
        except ValueError as error:
            return _reply(client, 400, str(error))
        try:
            upstream = proxy.destinations.connect(host, port)
        except Refused as error:
            proxy.refused(str(error))
            return _reply(client, 403, f"paas egress: refused {error}")
        except OSError as error:
            return _reply(client, 502, f"paas egress: {error}")
        self.server.track(upstream)
        try:
            if method == b"CONNECT":
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            upstream.sendall(first)
            _relay(client, upstream)
        finally:
            self.server.track(upstream, add=False)
            upstream.close()


def _read_head(client: socket.socket) -> tuple[tuple[bytes, bytes, bytes] | None, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        if len(data) > MAX_HEAD:
            return None, b""
        chunk = client.recv(65536)
        if not chunk:
            return None, b""
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    request_line = head.split(b"\r\n", 1)[0].split()
    if len(request_line) != 3:
        return None, b""
    return (request_line[0], request_line[1], head), rest


def _upstream_request(method: bytes, target: bytes, head: bytes,
                      rest: bytes) -> tuple[str, int, bytes]:
    """Where to connect, and the bytes to send there first."""
    text = target.decode("ascii", errors="replace")
    if method == b"CONNECT":
        parsed = urlsplit(f"//{text}")
        if not parsed.hostname or not parsed.port:
            raise ValueError(f"CONNECT needs host:port, got {text!r}")
        return parsed.hostname, parsed.port, rest
    parsed = urlsplit(text)
    if parsed.scheme != "http" or not parsed.hostname:
        raise ValueError(f"a proxy request needs an absolute http:// URL, got {text!r}")
    path = (parsed.path or "/") + (f"?{parsed.query}" if parsed.query else "")
    version = head.split(b"\r\n", 1)[0].split()[2]
    headers = [line for line in head.split(b"\r\n")[1:]
               if line.split(b":", 1)[0].strip().lower() not in _HOP_BY_HOP]
    # One request per connection: a client's next request may be for another host.
    lines = [b" ".join([method, path.encode(), version]), *headers, b"Connection: close"]
    return parsed.hostname, parsed.port or 80, b"\r\n".join(lines) + b"\r\n\r\n" + rest


def _relay(client: socket.socket, upstream: socket.socket) -> None:
    back = threading.Thread(target=_pipe, args=(upstream, client), daemon=True)
    back.start()
    _pipe(client, upstream)
    back.join()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        _shutdown(source)
    finally:
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def _reply(client: socket.socket, status: int, message: str) -> None:
    reasons = {400: "Bad Request", 403: "Forbidden", 502: "Bad Gateway"}
    body = (message + "\n").encode()
    client.sendall(
        f"HTTP/1.1 {status} {reasons[status]}\r\nContent-Type: text/plain\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
