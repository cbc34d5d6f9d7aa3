"""The router against a real nginx: routing, headers, no-reload route changes, failures.

Upstreams are tiny HTTP servers in threads that echo their name and the headers they got.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from paas.errors import Invalid
from paas.settings import Settings
from router.nginx import Router

pytestmark = pytest.mark.skipif(
    shutil.which("nginx") is None or os.geteuid() != 0, reason="needs nginx and root"
)

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


class Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        if self.headers.get("Upgrade", "").lower() == "websocket":
            self._upgrade()
            return
        self._reply(
            {
                "name": self.server.name,  # type: ignore[attr-defined]
                "headers": dict(self.headers.items()),
                "peer_port": self.client_address[1],
            }
        )

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self._reply({"name": self.server.name, "received": len(body)})  # type: ignore[attr-defined]

    def _reply(self, payload: dict[str, object]) -> None:
        body = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _upgrade(self) -> None:
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.end_headers()
        self.wfile.flush()
        line = self.rfile.readline()
        self.wfile.write(b"echo:" + line)
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:
        pass


def serve(handler: type[BaseHTTPRequestHandler], name: str) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    server.name = name  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def addr(server: ThreadingHTTPServer) -> str:
    return f"127.0.0.1:{server.server_address[1]}"


@pytest.fixture(scope="module")
def upstreams() -> Iterator[tuple[str, str]]:
    a, b = serve(Echo, "a"), serve(Echo, "b")
    yield addr(a), addr(b)
    for server in (a, b):
        server.shutdown()
        server.server_close()


@pytest.fixture
def tmp_path() -> Iterator[Path]:
    """Our own temp dir: a concurrent pytest run may prune /tmp/pytest-of-<user> under us."""
    with tempfile.TemporaryDirectory(prefix="paas-router-test-") as path:
        yield Path(path)


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("PAAS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PAAS_ROUTER_PORT", str(free_port()))
    monkeypatch.setenv("PAAS_ROUTER_CONTROL_PORT", str(free_port()))
    return Settings()


@pytest.fixture
def router(settings: Settings) -> Iterator[Router]:
    router = Router(settings)
    router.ensure_nginx()
    yield router
    router.stop_nginx()


@pytest.fixture
def client(settings: Settings) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"http://127.0.0.1:{settings.router_port}", timeout=10) as c:
        yield c


def get(client: httpx.Client, host: str = "app.localhost", **headers: str) -> httpx.Response:
    return client.get("/some/path?q=1", headers={"Host": host, **headers})


def worker_pids(master: int) -> set[int]:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return {int(pid) for pid in children}


def alive(pid: int) -> bool:
    """A zombie counts as dead: PID 1 on these machines does not always reap."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_unknown_host_is_a_404_page(router: Router, client: httpx.Client) -> None:
    response = get(client, "nope.localhost")
    assert response.status_code == 404
    assert "text/html" in response.headers["content-type"]
    assert "no such app" in response.text.lower()
    assert client.get("/routes").status_code == 404  # the control endpoint is not public


def test_requests_alternate_between_peers(
    router: Router, client: httpx.Client, upstreams: tuple[str, str]
) -> None:
    router.set_routes({"App.Localhost": list(upstreams)})
    assert router.get_routes() == {"app.localhost": list(upstreams)}
    names = [get(client).json()["name"] for _ in range(6)]
    assert sorted(names) == ["a", "a", "a", "b", "b", "b"]
    assert all(names[i] != names[i + 1] for i in range(5))


def test_upstream_connections_are_kept_alive(
    router: Router, client: httpx.Client, upstreams: tuple[str, str]
) -> None:
    router.set_routes({"app.localhost": [upstreams[0]]})
    ports = {get(client, Connection="close").json()["peer_port"] for _ in range(4)}
    assert len(ports) == 1


def test_forwarding_headers(
    router: Router, client: httpx.Client, upstreams: tuple[str, str], settings: Settings
) -> None:
    router.set_routes({"app.localhost": [upstreams[0]]})
    before = int(time.time() * 1000)
    port = settings.router_port
    response = get(client, f"app.localhost:{port}", **{"X-Forwarded-For": "203.0.113.7"})
    headers = {k.lower(): v for k, v in response.json()["headers"].items()}
    assert headers["host"] == f"app.localhost:{port}"
    assert headers["x-forwarded-for"] == "203.0.113.7, 127.0.0.1"
    assert headers["x-forwarded-proto"] == "http"
    assert headers["x-forwarded-port"] == str(port)
    assert headers["via"] == "1.1 paas"
    assert len(headers["x-request-id"]) == 32
    assert before - 1000 <= int(headers["x-request-start"]) <= time.time() * 1000 + 1000

    kept = "client-supplied-id_0123456789+/="
    echoed = get(client, **{"X-Request-Id": kept}).json()["headers"]
    assert echoed["X-Request-Id"] == kept
    for bad in ("short", "x" * 201, "has spaces in it, 12345678"):
        echoed = get(client, **{"X-Request-Id": bad}).json()["headers"]
        assert echoed["X-Request-Id"] != bad


def test_access_log_is_in_heroku_format(
    router: Router, client: httpx.Client, upstreams: tuple[str, str], settings: Settings
) -> None:
    router.set_routes({"app.localhost": [upstreams[0]], "idle.localhost": []})
    get(client, **{"X-Request-Id": "logged-request-id-0123456789"})
    get(client, "idle.localhost")
    log = settings.router_dir / "access.log"
    wait_for(lambda: len(log.read_text().splitlines()) >= 2)
    ok, h14 = log.read_text().splitlines()[-2:]
    assert ok.startswith('at=info method=GET path="/some/path?q=1" host=app.localhost ')
    assert "request_id=logged-request-id-0123456789" in ok
    assert f'fwd="127.0.0.1" dyno={upstreams[0]} ' in ok
    assert " status=200 " in ok and ok.endswith(" protocol=http")
    assert "connect=" in ok and "ms service=" in ok
    assert h14.startswith('at=error code=H14 desc="No web processes running" ')


def test_route_change_needs_no_reload(
    router: Router, client: httpx.Client, upstreams: tuple[str, str]
) -> None:
    router.set_routes({"app.localhost": [upstreams[0]]})
    assert get(client).json()["name"] == "a"
    master = router.pid()
    assert master is not None
    workers = worker_pids(master)
    router.set_routes({"app.localhost": [upstreams[1]], "other.localhost": [upstreams[0]]})
    assert [get(client).json()["name"] for _ in range(3)] == ["b", "b", "b"]
    assert get(client, "other.localhost").json()["name"] == "a"
    router.set_routes({"other.localhost": [upstreams[0]]})
    assert get(client).status_code == 404
    assert router.get_routes() == {"other.localhost": [upstreams[0]]}
    assert router.pid() == master
    assert worker_pids(master) == workers


def test_dead_peer_is_skipped(
    router: Router, client: httpx.Client, upstreams: tuple[str, str]
) -> None:
    dead = f"127.0.0.1:{free_port()}"
    router.set_routes({"app.localhost": [dead, upstreams[0], dead]})
    for _ in range(6):
        response = get(client)
        assert response.status_code == 200
        assert response.json()["name"] == "a"


def test_empty_and_dead_peer_lists_are_503_pages(router: Router, client: httpx.Client) -> None:
    router.set_routes({"app.localhost": [], "crashed.localhost": [f"127.0.0.1:{free_port()}"]})
    idle = get(client)
    assert idle.status_code == 503
    assert "No web processes running" in idle.text
    crashed = get(client, "crashed.localhost")
    assert crashed.status_code == 503
    assert "Application error" in crashed.text


def test_large_bodies_and_websocket_upgrade(
    router: Router, client: httpx.Client, upstreams: tuple[str, str], settings: Settings
) -> None:
    router.set_routes({"app.localhost": [upstreams[0]]})
    body = os.urandom(3 * 1024 * 1024)
    response = client.post("/upload", content=body, headers={"Host": "app.localhost"})
    assert response.json() == {"name": "a", "received": len(body)}

    with socket.create_connection(("127.0.0.1", settings.router_port), timeout=5) as sock:
        sock.sendall(
            b"GET /ws HTTP/1.1\r\nHost: app.localhost\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\n\r\n"
        )
        stream = sock.makefile("rb")
        assert stream.readline().startswith(b"HTTP/1.1 101")
        while stream.readline() not in (b"\r\n", b""):
            pass
        sock.sendall(b"hello over the tunnel\n")
        assert stream.readline() == b"echo:hello over the tunnel\n"


def test_bad_routes_are_refused(router: Router) -> None:
    router.set_routes({"app.localhost": ["10.213.1.2:5000"]})
    for routes in ({"bad host": []}, {"app.localhost": ["example.com:80"]}):
        with pytest.raises(Invalid):
            router.set_routes(routes)
    assert router.get_routes() == {"app.localhost": ["10.213.1.2:5000"]}


def test_ensure_is_idempotent_and_stop_is_graceful(router: Router, settings: Settings) -> None:
    master = router.pid()
    router.ensure_nginx()
    assert router.pid() == master
    assert router.nginx_running()
    assert Router(settings).pid() == master  # a new control plane adopts it via the pid file
    router.stop_nginx()
    assert not router.nginx_running()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{settings.router_port}/")
    router.stop_nginx()


def test_ensure_restarts_a_killed_nginx(
    router: Router, client: httpx.Client, upstreams: tuple[str, str]
) -> None:
    router.set_routes({"app.localhost": [upstreams[0]]})
    master = router.pid()
    assert master is not None
    workers = worker_pids(master)
    os.kill(master, signal.SIGKILL)
    wait_for(lambda: not router.nginx_running())
    router.ensure_nginx()
    assert router.nginx_running()
    assert router.pid() != master
    assert not any(alive(pid) for pid in workers)  # orphaned workers no longer hold the ports
    assert router.get_routes() == {}
    router.set_routes({"app.localhost": [upstreams[1]]})
    assert get(client).json()["name"] == "b"


# -- main(): the router process ------------------------------------------------------------


class FakeApi(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        api = self.server
        ok = self.headers.get("Authorization") == f"Bearer {api.token}"  # type: ignore[attr-defined]
        if self.path != "/v1/internal/routes" or not ok or api.failing:  # type: ignore[attr-defined]
            self.send_error(503 if ok else 401)
            return
        body = json.dumps({"routes": api.routes}).encode()  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    if shutil.which("redis-server") is None:
        pytest.skip("needs redis-server")
    sock = tmp_path / "redis.sock"
    proc = subprocess.Popen(
        [
            "redis-server",
            "--port",
            "0",
            "--unixsocket",
            str(sock),
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
    )
    wait_for(sock.exists)
    yield f"unix://{sock}"
    proc.terminate()
    proc.wait(timeout=10)


def test_main_applies_the_api_route_table(
    settings: Settings,
    redis_url: str,
    upstreams: tuple[str, str],
    client: httpx.Client,
) -> None:
    import redis

    api = serve(FakeApi, "api")
    api.token = "service-token-for-tests"  # type: ignore[attr-defined]
    api.failing = True  # type: ignore[attr-defined]
    api.routes = {"app.localhost": [upstreams[0]]}  # type: ignore[attr-defined]
    settings.home.mkdir(parents=True)
    settings.service_token_path.write_text(api.token + "\n")  # type: ignore[attr-defined]
    env = {
        **os.environ,
        "PAAS_API_URL": f"http://{addr(api)}",
        "PAAS_REDIS_URL": redis_url,
        "PYTHONPATH": str(REPO),
    }
    stderr_path = settings.home / "router.stderr"
    with stderr_path.open("w") as stderr_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "router"], env=env, cwd=REPO, stderr=stderr_file
        )
    router = Router(settings)
    try:
        wait_for(router.nginx_running, timeout=10)
        time.sleep(1.5)  # a few polls against a failing API: logged, not fatal
        assert proc.poll() is None
        api.failing = False  # type: ignore[attr-defined]
        wait_for(lambda: get(client).status_code == 200)
        assert get(client).json()["name"] == "a"

        publisher = redis.Redis.from_url(redis_url)
        for peer, name in ((upstreams[1], "b"), (upstreams[0], "a"), (upstreams[1], "b")):
            api.routes = {"app.localhost": [peer]}  # type: ignore[attr-defined]
            start = time.monotonic()
            publisher.publish("paas:routes", "changed")
            wait_for(lambda: router.get_routes() == {"app.localhost": [peer]})  # noqa: B023
            assert time.monotonic() - start < 0.9
            assert get(client).json()["name"] == name
        publisher.close()

        master = router.pid()
        assert master is not None
        os.kill(master, signal.SIGKILL)
        wait_for(lambda: router.pid() not in (None, master), timeout=5)
        wait_for(lambda: router.get_routes() == {"app.localhost": [upstreams[1]]})

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert router.nginx_running()  # nginx outlives the control plane
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        print(stderr_path.read_text())  # shown when the test fails
        router.stop_nginx()
        api.shutdown()
        api.server_close()
    stderr = stderr_path.read_text()
    failures = [line for line in stderr.splitlines() if "what=api" in line and "error" in line]
    assert len(failures) == 1, stderr
