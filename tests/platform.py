"""A whole paas platform for end-to-end tests: `paas up` in a subprocess on free ports, in a
private PAAS_HOME, torn down with `paas down`; and a git client that pushes to it."""

from __future__ import annotations

import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
APPS = ROOT / "tests" / "apps"
PAAS = str(Path(sys.executable).parent / "paas")
LOGS = Path(tempfile.gettempdir()) / "paas-e2e-logs"


# Second octets of this run's live platforms, and the last one given out: subnets are given
# round-robin, so a short-lived test network is not reused at once either.
_live_subnets: set[int] = set()
_last_given = [0]


def _worker() -> tuple[int, int]:
    """This process's place among pytest-xdist's workers: (index, count); (0, 1) without
    xdist. Workers are named gw0, gw1, ..."""
    name = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    if not name.startswith("gw") or count <= 1:
        return 0, 1
    return int(name[2:]) % count, count


def _share(whole: range) -> range:
    """This worker's slice of a range: the workers' slices are disjoint and cover it."""
    index, count = _worker()
    size = len(whole) // count
    if size == 0:
        raise RuntimeError(f"{len(whole)} values cannot be shared by {count} test workers")
    start = whole.start + index * size
    return range(start, whole.stop if index == count - 1 else start + size)


def _test_subnet_range() -> range:
    """The second octets this test process may use: PAAS_TEST_SUBNETS ("240-249") keeps
    concurrent test runs on one machine apart, and each xdist worker gets a slice of its own,
    so two workers never pick the same subnet (a bridge shows in `ip addr` only once its
    platform started a dyno, too late for another worker to see it)."""
    first, _, last = os.environ.get("PAAS_TEST_SUBNETS", "215-254").partition("-")
    return _share(range(int(first), int(last or first) + 1))


def _second_octet(subnet: str) -> int:
    return int(subnet.split(".")[1])


def free_subnet() -> str:
    """A 10.N.0.0/16 that no interface of this host uses and no live platform of this run
    holds: dynos left by a killed run, or another test run, on the same range would make the
    host route to the wrong bridge."""
    addresses = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True,
                               text=True, check=True).stdout
    used = {int(n) for n in re.findall(r"inet 10\.(\d+)\.", addresses)} | _live_subnets
    seconds = list(_test_subnet_range())
    start = seconds.index(_last_given[0]) + 1 if _last_given[0] in seconds else 0
    for second in seconds[start:] + seconds[:start]:
        if second not in used:
            _last_given[0] = second
            return f"10.{second}.0.0/16"
    raise RuntimeError("no free 10.N.0.0/16 left for a test platform (PAAS_TEST_SUBNETS)")


def second_subnet() -> str:
    """For a test's own platform beside the session's one."""
    return free_subnet()


def hold_subnet(subnet: str) -> None:
    """A subnet a test uses without a platform of its own (a second agent's): no platform
    gets it until `release_subnet`."""
    _live_subnets.add(_second_octet(subnet))


def release_subnet(subnet: str) -> None:
    _live_subnets.discard(_second_octet(subnet))


# A loopback address that test fixtures serve on for builds (a buildpack's git repository):
# test platforms open it to builds' egress proxies (PAAS_EGRESS_ALLOW). Not 127.0.0.1, which
# a build reaches directly, on its own loopback (no_proxy).
SERVED_ON = "127.0.0.2"


# Ports for test platforms and fixtures: below the kernel's ephemeral range (32768-60999 by
# default), so no outgoing connection and no `bind(0)` of another process is handed one of
# them, and split between xdist workers, so two workers never give out the same port between
# its check and its platform binding it. PAAS_TEST_PORTS ("20000-24999") moves the range, for
# two test runs on one machine.
_last_port = [0]


def _test_port_range() -> range:
    first, _, last = os.environ.get("PAAS_TEST_PORTS", "12000-31999").partition("-")
    return _share(range(int(first), int(last or first) + 1))


def free_port() -> int:
    """A TCP port free now on every address, given round-robin within this worker's share of
    PAAS_TEST_PORTS: a port is not given out again by this process before the others were."""
    ports = _test_port_range()
    # From a random place at first: another test run on the machine starts elsewhere.
    start = ports.index(_last_port[0]) + 1 if _last_port[0] in ports else random.randrange(
        len(ports))
    for port in [*ports[start:], *ports[:start]]:
        with socket.socket() as s:
            try:
                s.bind(("", port))
            except OSError:
                continue
        _last_port[0] = port
        return port
    raise RuntimeError("no free port left for a test (PAAS_TEST_PORTS)")


@dataclass
class Platform:
    home: Path
    env: dict[str, str]
    process: subprocess.Popen | None = None
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.home.parent / "paas-up.log"

    @classmethod
    def create(cls, **settings: str) -> Platform:
        subnet = settings.pop("PAAS_DYNO_SUBNET", None) or free_subnet()
        _live_subnets.add(_second_octet(subnet))
        base = Path(tempfile.mkdtemp(prefix="paas-e2e-"))
        base.chmod(0o711)
        home = base / "home"
        env = {
            **os.environ,
            "PAAS_HOME": str(home),
            "PAAS_API_PORT": str(free_port()),
            "PAAS_ROUTER_PORT": str(free_port()),
            "PAAS_ROUTER_CONTROL_PORT": str(free_port()),
            "PAAS_ROUTER_TLS_PORT": str(free_port()),
            "PAAS_ROUTER_TIMEOUT": "10",
            "PAAS_SSH_PORT": str(free_port()),
            "PAAS_DYNO_SUBNET": subnet,
            "PAAS_STOP_GRACE": "3",
            "PAAS_BOOT_TIMEOUT": "30",
            "PAAS_BUILD_TIMEOUT": "300",
            "PAAS_AGENT_INTERVAL": "0.5",
            "PAAS_DYNO_LOG_MAX_BYTES": str(1024 * 1024),
            "PAAS_EGRESS_ALLOW": SERVED_ON,
            "GIT_TERMINAL_PROMPT": "0",
            **settings,
        }
        for key in ("PAAS_API_URL", "PAAS_API_TOKEN", "PAAS_REDIS_URL", "PAAS_DATABASE_URL"):
            if key not in settings:
                env.pop(key, None)
        if "PAAS_DATABASE_URL" not in settings and _suite_on_postgres():
            env["PAAS_DATABASE_URL"] = _postgres_database()
        return cls(home, env)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.env['PAAS_API_PORT']}"

    @property
    def database_url(self) -> str:
        """The platform's database: SQLite in its home, or PAAS_DATABASE_URL."""
        return self.env.get("PAAS_DATABASE_URL") or f"sqlite:///{self.home / 'paas.db'}"

    @property
    def router_port(self) -> int:
        return int(self.env["PAAS_ROUTER_PORT"])

    @property
    def ssh_port(self) -> int:
        return int(self.env["PAAS_SSH_PORT"])

    @property
    def token(self) -> str:
        return (self.home / "admin-token").read_text().strip()

    def up(self, timeout: float = 90) -> None:
        start = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen([PAAS, "up"], env=self.env, stdout=log,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while b"| up: API" not in self.log_path.read_bytes()[start:]:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"paas up failed:\n{self.output()}")
            time.sleep(0.2)

    def stop_control_plane(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(60)

    def down(self) -> None:
        self.paas("down", check=False, timeout=120)
        if self.process and self.process.poll() is None:
            self.process.kill()
        self._keep_log()
        shutil.rmtree(self.home.parent, ignore_errors=True)
        _live_subnets.discard(_second_octet(self.env["PAAS_DYNO_SUBNET"]))

    def _keep_log(self, keep: int = 10) -> None:
        """The platform's own log outlives it (the last few), for failures seen only on CI."""
        if not self.log_path.exists():
            return
        LOGS.mkdir(exist_ok=True)
        shutil.copy(self.log_path, LOGS / f"{self.home.parent.name}.log")
        for old in sorted(LOGS.glob("*.log"), key=lambda p: p.stat().st_mtime)[:-keep]:
            old.unlink(missing_ok=True)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")[-20000:]

    def paas(self, *args: str, check: bool = True, timeout: float = 120,
             cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([PAAS, *args], env=self.env, capture_output=True, text=True,
                                timeout=timeout, cwd=cwd)
        if check and result.returncode != 0:
            raise AssertionError(f"paas {' '.join(args)} failed:\n{result.stdout}\n"
                                 f"{result.stderr}")
        return result

    def api(self) -> httpx.Client:
        return httpx.Client(base_url=self.api_url, timeout=30,
                            headers={"Authorization": f"Bearer {self.token}"})

    def get(self, app: str, path: str = "/", **kwargs: object) -> httpx.Response:
        """A request through the router, as a visitor of http://<app>.localhost/ sends it."""
        url = f"http://127.0.0.1:{self.router_port}{path}"
        return httpx.get(url, headers={"Host": f"{app}.localhost"}, timeout=30, **kwargs)

    def wait_for(self, app: str, text: str, timeout: float = 60) -> httpx.Response:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                last = self.get(app)
                if text in last.text:
                    return last
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"{app} never served {text!r}; last: "
                             f"{last.status_code if last else None} {last.text if last else ''}")

    def remote_url(self, app: str, token: str | None = None) -> str:
        return (f"http://paas:{token or self.token}@127.0.0.1:{self.env['PAAS_API_PORT']}"
                f"/git/{app}.git")


def _suite_on_postgres() -> bool:
    from tests import postgres

    return postgres.on_postgres()


def _postgres_database() -> str:
    """A new database on this test process's PostgreSQL cluster (tests/postgres.py)."""
    from tests import postgres

    return postgres.cluster().create_database("platform")


def git(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "HOME": str(repo.parent),
           "GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "test@example.invalid",
           "GIT_COMMITTER_NAME": "Test", "GIT_COMMITTER_EMAIL": "test@example.invalid"}
    result = subprocess.run(["git", *args], cwd=repo, env=env, capture_output=True, text=True,
                            timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def app_repo(tmp: Path, sample: str) -> Path:
    """A git repository holding a copy of a sample app, committed on main."""
    repo = tmp / sample
    shutil.copytree(APPS / sample, repo)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "initial")
    return repo


def commit_all(repo: Path, message: str) -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
