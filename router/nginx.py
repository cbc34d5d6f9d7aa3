"""The router's hold on nginx: render its config, start or adopt it, push the route table.

nginx is the data plane. The route table lives in a lua_shared_dict that a loopback-only
control server (inside nginx) replaces on `PUT /routes`, so route changes never reload nginx.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import httpx
import jinja2

from paas.errors import Invalid, PaasError, Unavailable
from paas.settings import Settings

PACKAGE_DIR = Path(__file__).resolve().parent
MODULES_DIR = Path("/usr/lib/nginx/modules")
NGINX = "nginx"
WORKER_USER = "nobody nogroup"
_HOST_RE = re.compile(r"^[a-z0-9._-]+$")
_PEER_RE = re.compile(r"^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3}):(\d{1,5})$")
_TEMP_DIRS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


class Router:
    def __init__(
        self,
        settings: Settings,
        *,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
    ) -> None:
        self.settings = settings
        self.dir = settings.router_dir
        self.conf_path = self.dir / "nginx.conf"
        self.pid_path = self.dir / "nginx.pid"
        self.lua_dir = self.dir / "lua"
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.control_url = f"http://127.0.0.1:{settings.router_control_port}/routes"

    # -- nginx process -------------------------------------------------------------------

    def ensure_nginx(self) -> None:
        """Render the config; start nginx, or adopt the running one (reloading it if the
        config changed). Idempotent."""
        self._prepare_dirs()
        self._install_lua()
        conf = self.render()
        changed = not self.conf_path.exists() or self.conf_path.read_text() != conf
        if changed:
            self._write_tested(conf)
        pid = self.pid()
        if pid is None:
            self._kill_orphans()
            self._start()
        elif changed:
            os.kill(pid, signal.SIGHUP)

    def nginx_running(self) -> bool:
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

    def stop_nginx(self, timeout: float = 15.0) -> None:
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
        return env.get_template("nginx.conf.j2").render(
            modules_dir=MODULES_DIR,
            user=WORKER_USER,
            dir=self.dir,
            lua_dir=self.lua_dir,
            router_port=self.settings.router_port,
            control_port=self.settings.router_control_port,
            connect_timeout=_ms(self.connect_timeout),
            read_timeout=_ms(self.read_timeout),
            shutdown_timeout=10,
            routes_dict_size="16m",
            routes_body_size="8m",
        )

    def _prepare_dirs(self) -> None:
        for sub in _TEMP_DIRS:
            (self.dir / "tmp" / sub).mkdir(parents=True, exist_ok=True)
        self.lua_dir.mkdir(exist_ok=True)
        self.dir.chmod(0o755)

    def _install_lua(self) -> None:
        source = PACKAGE_DIR / "lua" / "paas_router.lua"
        target = self.lua_dir / source.name
        if not target.exists() or target.read_bytes() != source.read_bytes():
            tmp = target.with_suffix(".tmp")
            shutil.copyfile(source, tmp)
            tmp.replace(target)
            # A changed Lua module needs a reload even when nginx.conf did not change.
            self.conf_path.unlink(missing_ok=True)

    def _write_tested(self, conf: str) -> None:
        candidate = self.dir / "nginx.conf.new"
        candidate.write_text(conf)
        result = self._nginx("-t", "-c", str(candidate))
        if result.returncode != 0:
            raise PaasError(f"nginx rejected the router config: {_tail(result.stderr)}")
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
        ports = {self.settings.router_port, self.settings.router_control_port}
        inodes = _listening_inodes(ports)
        if not inodes:
            return
        for pid in _socket_holders(inodes):
            if _comm(pid) == "nginx":
                _kill(pid, signal.SIGKILL)
                _wait_gone(pid, 2.0)

    # -- route table ---------------------------------------------------------------------

    def set_routes(self, routes: dict[str, list[str]]) -> None:
        """Replace the whole route table (host -> ["ip:port", ...]) without a reload."""
        body = format_routes(routes)
        try:
            response = httpx.put(self.control_url, content=body.encode(), timeout=5.0)
        except httpx.HTTPError as exc:
            raise Unavailable(f"router control endpoint: {exc}") from exc
        if response.status_code != 204:
            raise PaasError(f"router rejected the route table: {response.text.strip()}")

    def get_routes(self) -> dict[str, list[str]]:
        try:
            response = httpx.get(self.control_url, timeout=5.0)
        except httpx.HTTPError as exc:
            raise Unavailable(f"router control endpoint: {exc}") from exc
        if response.status_code != 200:
            raise PaasError(f"router control endpoint answered {response.status_code}")
        return parse_routes(response.text)


def format_routes(routes: dict[str, list[str]]) -> str:
    lines = []
    for host, peers in sorted(routes.items()):
        name = host.lower()
        if not _HOST_RE.match(name):
            raise Invalid(f"not a valid router host name: {host!r}")
        for peer in peers:
            _check_peer(peer)
        lines.append(" ".join([name, *peers]) + "\n")
    return "".join(lines)


def parse_routes(text: str) -> dict[str, list[str]]:
    routes: dict[str, list[str]] = {}
    for line in text.splitlines():
        words = line.split()
        if words:
            routes[words[0]] = words[1:]
    return routes


def _check_peer(peer: str) -> None:
    match = _PEER_RE.match(peer)
    if (
        not match
        or any(int(octet) > 255 for octet in match.groups()[:4])
        or not 0 < int(match.group(5)) < 65536
    ):
        raise Invalid(f"not an ip:port peer: {peer!r}")


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


def _listening_inodes(ports: set[int]) -> set[str]:
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            port = int(fields[1].rsplit(":", 1)[1], 16)
            if fields[3] == "0A" and port in ports:
                inodes.add(fields[9])
    return inodes


def _socket_holders(inodes: set[str]) -> set[int]:
    wanted = {f"socket:[{inode}]" for inode in inodes}
    holders: set[int] = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fds = list((proc / "fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(fd) in wanted:
                    holders.add(int(proc.name))
                    break
            except OSError:
                continue
    return holders
