"""The router's hold on nginx: render its config, start or adopt it, push the route table.

nginx is the data plane. The route table lives in a lua_shared_dict that a loopback-only
control server (inside nginx) replaces on `PUT /routes`, so route changes (dynos, domains,
maintenance) never reload nginx. Certificates are server-level: they re-render the config,
which is tested with `nginx -t` before a graceful reload; a rejected config is never applied.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import jinja2

from paas import sockets
from paas.client import ssl_context
from paas.errors import Invalid, PaasError, Unavailable
from paas.settings import Settings
from paas.wire import Certificate as Cert
from paas.wire import Challenge, Peer, Route

# the route table's types too
__all__ = ["Cert", "Challenge", "ConfigRejected", "Peer", "Route", "Router"]

PACKAGE_DIR = Path(__file__).resolve().parent
MODULES_DIR = Path("/usr/lib/nginx/modules")
NGINX = "nginx"
WORKER_USER = "nobody nogroup"
_HOST_RE = re.compile(r"^(\*\.)?[a-z0-9._-]+$")
_APP_RE = re.compile(r"^[a-z0-9-]+$")
_DYNO_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
_TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_KEY_AUTH_RE = re.compile(r"^[A-Za-z0-9_.-]{1,300}$")
_PEER_RE = re.compile(r"^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3}):(\d{1,5})$")
_TEMP_DIRS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
MODES = ("up", "idle", "crashed", "maintenance")


class ConfigRejected(PaasError):
    """nginx -t refused the rendered config; the running config stays."""


def cert_digest(cert: Cert) -> str:
    """What a certificate's files are named by: they change when its content does."""
    return hashlib.sha256((cert.cert + cert.key).encode()).hexdigest()[:16]


@dataclass
class Router:
    settings: Settings
    certificates: tuple[Cert, ...] | None = None  # None: not known yet
    reloads: int = field(default=0, init=False)
    _rejected: tuple[str, ConfigRejected] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.dir = self.settings.router_dir
        self.conf_path = self.dir / "nginx.conf"
        self.pid_path = self.dir / "nginx.pid"
        self.lua_dir = self.dir / "lua"
        self.certs_dir = self.dir / "certs"
        self.log_socket = self.dir / "log.sock"
        self.control_url = f"http://127.0.0.1:{self.settings.router_control_port}/routes"
        self.challenges_url = self.control_url.removesuffix("/routes") + "/challenges"
        # Any local process can reach the loopback control endpoint, so it also needs a
        # secret that only the router (root, PAAS_HOME) can read.
        self.control_headers = {"X-Paas-Control": _control_secret(self.dir)}
        # One client for the process: `httpx.get` makes a client (and an SSL context) per
        # call, and the router's RSS grew by megabytes a minute during deploys doing so.
        self.control = httpx.Client(timeout=5.0, headers=self.control_headers,
                                    limits=httpx.Limits(max_keepalive_connections=0),
                                    verify=ssl_context())

    # -- nginx process -------------------------------------------------------------------

    def ensure_running(self, certificates: tuple[Cert, ...] | None = None) -> bool:
        """Render the config (with `certificates` when given); start nginx, or adopt the
        running one, gracefully reloading it if the config changed. Returns True when nginx
        was (re)started: its route table is empty then. A config nginx rejects raises
        ConfigRejected, after starting nginx with the last good config if it was down."""
        self._prepare_dirs()
        lua_changed = self._install_lua()
        if certificates is not None:
            self.certificates = certificates
        if self.certificates is None and self.conf_path.exists():
            # Certificates not known yet (the API is down): keep serving the last good config.
            conf = self.conf_path.read_text()
        else:
            conf = self.render()
        changed = lua_changed or not self.conf_path.exists() or \
            self.conf_path.read_text() != conf
        rejected: ConfigRejected | None = None
        if changed and self._rejected is not None and self._rejected[0] == conf:
            rejected, changed = self._rejected[1], False  # tested already: not again
        elif changed:
            try:
                self._write_tested(conf)
            except ConfigRejected as exc:
                rejected, changed = exc, False
                self._rejected = (conf, exc)
        started = False
        pid = self.pid()
        if pid is None and self.conf_path.exists():
            self._kill_orphans()
            self._start()
            started = True
        elif pid is not None and changed:
            os.kill(pid, signal.SIGHUP)
            self.reloads += 1
        if not rejected:
            self._prune_certs(conf)
        if rejected:
            raise rejected
        return started

    def running(self) -> bool:
        return self.pid() is not None

    def pid(self) -> int | None:
        """The pid of our nginx master, or None when it is not running."""
        try:
            pid = int(self.pid_path.read_text().strip())
        except (OSError, ValueError):
            return None
        if _alive(pid) and str(self.conf_path) in _cmdline(pid):
            return pid
        return None

    def stop(self, timeout: float = 15.0) -> None:
        """Graceful quit (finish in-flight requests), wait; idempotent."""
        pid = self.pid()
        if pid is not None:
            os.kill(pid, signal.SIGQUIT)
            if not _wait_gone(pid, timeout):
                _kill(pid, signal.SIGKILL)
                _wait_gone(pid, 2.0)
        self._kill_orphans()
        self.pid_path.unlink(missing_ok=True)

    def render(self) -> str:
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(PACKAGE_DIR / "templates"),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
        )
        s = self.settings
        certs = [{"hostnames": c.hostnames, "cert_path": self._cert_path(c, "crt"),
                  "key_path": self._cert_path(c, "key")} for c in self.certificates or ()]
        return env.get_template("nginx.conf.j2").render(
            modules_dir=MODULES_DIR,
            user=WORKER_USER,
            workers="auto",
            dir=self.dir,
            lua_dir=self.lua_dir,
            log_socket=self.log_socket,
            router_port=s.router_port,
            tls_port=s.router_tls_port,
            control_port=s.router_control_port,
            control_secret=self.control_headers["X-Paas-Control"],
            connect_timeout=_ms(s.router_connect_timeout),
            read_timeout=_ms(s.router_timeout),
            max_body=f"{s.router_max_body_mb}m" if s.router_max_body_mb > 0 else "0",
            certificates=certs,
            shutdown_timeout=10,
            routes_dict_size="16m",
            routes_body_size="8m",
        )

    def _cert_path(self, cert: Cert, kind: str) -> Path:
        return self.certs_dir / f"{cert_digest(cert)}.{kind}"

    def _write_certs(self) -> None:
        """Certificate files are named by their content: a running config's files are never
        overwritten by a candidate's."""
        for cert in self.certificates or ():
            for kind, text in (("crt", cert.cert), ("key", cert.key)):
                path = self._cert_path(cert, kind)
                if not path.exists():
                    tmp = path.with_suffix(".tmp")
                    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                    with os.fdopen(fd, "w") as f:
                        f.write(text)
                    tmp.replace(path)

    def _prune_certs(self, conf: str) -> None:
        for path in self.certs_dir.iterdir():
            if str(path) not in conf:
                path.unlink(missing_ok=True)

    def _prepare_dirs(self) -> None:
        for sub in _TEMP_DIRS:
            (self.dir / "tmp" / sub).mkdir(parents=True, exist_ok=True)
        self.lua_dir.mkdir(exist_ok=True)
        self.certs_dir.mkdir(exist_ok=True, mode=0o700)
        self.dir.chmod(0o755)

    def _install_lua(self) -> bool:
        source = PACKAGE_DIR / "lua" / "paas_router.lua"
        target = self.lua_dir / source.name
        if target.exists() and target.read_bytes() == source.read_bytes():
            return False
        tmp = target.with_suffix(".tmp")
        shutil.copyfile(source, tmp)
        tmp.replace(target)
        return True  # a changed Lua module needs a reload even when nginx.conf did not change

    def _write_tested(self, conf: str) -> None:
        self._write_certs()
        candidate = self.dir / "nginx.conf.new"
        candidate.write_text(conf)
        result = self._nginx("-t", "-c", str(candidate))
        if result.returncode != 0:
            raise ConfigRejected(f"nginx rejected the router config, keeping the last good "
                                 f"one: {_tail(result.stderr)}")
        candidate.replace(self.conf_path)

    def _start(self) -> None:
        self.pid_path.unlink(missing_ok=True)
        result = self._nginx("-c", str(self.conf_path))
        if result.returncode != 0:
            raise Unavailable(f"nginx did not start: {_tail(result.stderr)}")
        deadline = time.monotonic() + 5.0
        while self.pid() is None:
            if time.monotonic() > deadline:
                raise Unavailable(f"nginx did not write {self.pid_path}")
            time.sleep(0.02)

    def _nginx(self, *args: str) -> subprocess.CompletedProcess[str]:
        # nginx writes to its error log once configured; stderr goes to a file, not a pipe,
        # so a daemonized child can never hold our pipe open.
        log = self.dir / "nginx.stderr"
        with log.open("w+") as err:
            proc = subprocess.run(
                [NGINX, "-p", f"{self.dir}/", *args],
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
                timeout=30,
                check=False,
            )
            err.seek(0)
            return subprocess.CompletedProcess(proc.args, proc.returncode, "", err.read())

    def _kill_orphans(self) -> None:
        """Workers outlive a SIGKILLed master and keep our ports: end them."""
        s = self.settings
        ports = {s.router_port, s.router_control_port, s.router_tls_port}
        inodes = sockets.listening_inodes(ports)
        if not inodes:
            return
        for pid in sockets.socket_holders(inodes):
            if _comm(pid) == "nginx":
                _kill(pid, signal.SIGKILL)
                _wait_gone(pid, 2.0)

    # -- route table ---------------------------------------------------------------------

    def set_routes(self, routes: dict[str, Route]) -> None:
        """Replace the whole route table without a reload."""
        body = format_routes(routes)
        try:
            response = self.control.put(self.control_url, content=body.encode())
        except httpx.HTTPError as exc:
            raise Unavailable(f"router control endpoint: {exc}") from exc
        if response.status_code != 204:
            raise PaasError(f"router rejected the route table: {response.text.strip()}")

    def get_routes(self) -> dict[str, Route]:
        return parse_routes(self._get(self.control_url))

    def set_challenges(self, challenges: tuple[Challenge, ...]) -> None:
        """Replace the ACME challenges the router answers, without a reload."""
        body = format_challenges(challenges)
        try:
            response = self.control.put(self.challenges_url, content=body.encode())
        except httpx.HTTPError as exc:
            raise Unavailable(f"router control endpoint: {exc}") from exc
        if response.status_code != 204:
            raise PaasError(f"router rejected the challenges: {response.text.strip()}")

    def get_challenges(self) -> tuple[Challenge, ...]:
        return parse_challenges(self._get(self.challenges_url))

    def _get(self, url: str) -> str:
        try:
            response = self.control.get(url)
        except httpx.HTTPError as exc:
            raise Unavailable(f"router control endpoint: {exc}") from exc
        if response.status_code != 200:
            raise PaasError(f"router control endpoint answered {response.status_code}")
        return response.text


def _control_secret(directory: Path) -> str:
    """Made once per installation, kept 0600 beside nginx.conf (which carries it too)."""
    path = directory / "control-secret"
    if not path.exists():
        directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(path.with_suffix(".tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
        os.replace(path.with_suffix(".tmp"), path)
    return path.read_text().strip()


def format_routes(routes: dict[str, Route]) -> str:
    lines = []
    for host, route in sorted(routes.items()):
        name = host.lower()
        if not _HOST_RE.match(name):
            raise Invalid(f"not a valid router host name: {host!r}")
        if not _APP_RE.match(route.app) or route.mode not in MODES:
            raise Invalid(f"not a valid route for {host}: {route!r}")
        for peer in route.peers:
            _check_peer(peer)
        if route.hsts_max_age < 0:
            raise Invalid(f"not a valid HSTS max-age for {host}: {route.hsts_max_age}")
        https = [f"https:{route.hsts_max_age}"] if route.https_redirect else []
        words = [name, route.app, route.mode, *https,
                 *(f"{p.addr}/{p.dyno}" for p in route.peers)]
        lines.append(" ".join(words) + "\n")
    return "".join(lines)


def parse_routes(text: str) -> dict[str, Route]:
    routes: dict[str, Route] = {}
    for line in text.splitlines():
        words = line.split()
        if len(words) >= 3:
            rest, redirect, hsts = words[3:], False, 0
            if rest and rest[0].startswith("https:"):
                redirect, hsts = True, int(rest[0].removeprefix("https:"))
                rest = rest[1:]
            peers = tuple(Peer(*w.split("/", 1)) for w in rest)
            routes[words[0]] = Route(words[1], words[2], peers, redirect, hsts)
    return routes


def format_challenges(challenges: tuple[Challenge, ...]) -> str:
    lines = []
    for c in sorted(challenges, key=lambda c: c.token):
        if not (_TOKEN_RE.match(c.token) and _KEY_AUTH_RE.match(c.key_authorization)
                and _HOST_RE.match(c.hostname) and not c.hostname.startswith("*")):
            raise Invalid(f"not a valid ACME challenge for {c.hostname!r}")
        lines.append(f"{c.token} {c.hostname.lower()} {c.key_authorization}\n")
    return "".join(lines)


def parse_challenges(text: str) -> tuple[Challenge, ...]:
    found = []
    for line in text.splitlines():
        words = line.split()
        if len(words) == 3:
            found.append(Challenge(hostname=words[1], token=words[0],
                                   key_authorization=words[2]))
    return tuple(sorted(found, key=lambda c: c.token))


def _check_peer(peer: Peer) -> None:
    match = _PEER_RE.match(peer.addr)
    if (
        not match
        or any(int(octet) > 255 for octet in match.groups()[:4])
        or not 0 < int(match.group(5)) < 65536
        or not _DYNO_RE.match(peer.dyno)
    ):
        raise Invalid(f"not an ip:port peer with a dyno name: {peer!r}")


def _ms(seconds: float) -> str:
    return f"{max(round(seconds * 1000), 1)}ms"


def _tail(text: str, lines: int = 5) -> str:
    return " | ".join(text.strip().splitlines()[-lines:])


def _alive(pid: int) -> bool:
    """True for a live process; a zombie (not reaped by an init that does not reap) is dead."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _kill(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True
