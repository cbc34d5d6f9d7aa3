"""The router against a real nginx: routing, headers, Heroku's error codes and their log
lines, no-reload route changes, TLS by SNI, failures.

Upstreams are tiny HTTP servers in threads that echo their name and the headers they got.
Router log lines are read from the unix datagram socket nginx sends them to.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
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
from router.nginx import Cert, Challenge, ConfigRejected, Peer, Route, Router
from router.service import bind_log_socket, parse_datagram
from tests.platform import free_port
from tests.tls import make_cert

REPO = Path(__file__).resolve().parents[2]


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
        if self.path == "/slow":
            time.sleep(2.5)
        if self.path == "/close":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
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


def up(app: str, *addrs: str) -> Route:
    return Route(app, "up", tuple(Peer(a, f"web.{i}") for i, a in enumerate(addrs, 1)))


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
        Path(path).chmod(0o711)  # nginx's workers (nobody) reach the log socket inside
        yield Path(path)


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("PAAS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PAAS_ROUTER_PORT", str(free_port()))
    monkeypatch.setenv("PAAS_ROUTER_CONTROL_PORT", str(free_port()))
    monkeypatch.setenv("PAAS_ROUTER_TLS_PORT", str(free_port()))
    monkeypatch.setenv("PAAS_ROUTER_TIMEOUT", "1")
    monkeypatch.setenv("PAAS_ROUTER_MAX_BODY_MB", "4")
    return Settings()


class LogLines:
    """What nginx sends to the router's log socket, as (app, line)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.sock = bind_log_socket(str(path))
        self.lines: list[tuple[str, str]] = []
        self.taken = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        while not self.stop.is_set():
            try:
                self.lines += parse_datagram(self.sock.recv(65536))
            except (TimeoutError, OSError):
                continue

    def wait(self, count: int) -> list[tuple[str, str]]:
        """The next `count` lines after those already taken."""
        wait_for(lambda: len(self.lines) >= self.taken + count)
        self.taken += count
        return self.lines[self.taken - count:self.taken]

    def close(self) -> None:
        self.stop.set()
        self.thread.join(2)
        self.sock.close()


@pytest.fixture
def router(settings: Settings) -> Iterator[Router]:
    router = Router(settings)
    router.ensure_running()
    yield router
    router.stop()


@pytest.fixture
def logs(router: Router) -> Iterator[LogLines]:
    lines = LogLines(router.log_socket)
    yield lines
    lines.close()


@pytest.fixture
def client(settings: Settings) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"http://127.0.0.1:{settings.router_port}", timeout=10) as c:
        yield c


def get(client: httpx.Client, host: str = "app.localhost", path: str = "/some/path?q=1",
        **headers: str) -> httpx.Response:
    return client.get(path, headers={"Host": host, **headers})


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


def test_unknown_host_is_a_404_page_with_a_log_line(
    router: Router, client: httpx.Client, logs: LogLines
) -> None:
    response = get(client, "nope.localhost")
    assert response.status_code == 404
    assert "text/html" in response.headers["content-type"]
    assert "no such app" in response.text.lower()
    app, line = logs.wait(1)[0]
    assert app == "-"
    assert line.startswith('at=error desc="No such app" method=GET ')
    assert " host=nope.localhost " in line and " status=404 " in line
    assert client.get("/routes").status_code == 404  # the control endpoint is not public


def test_requests_alternate_between_dynos_and_log_their_names(
    router: Router, client: httpx.Client, upstreams: tuple[str, str], logs: LogLines
) -> None:
    router.set_routes({"App.Localhost": up("app", *upstreams)})
    assert router.get_routes() == {"app.localhost": up("app", *upstreams)}
    names = [get(client).json()["name"] for _ in range(6)]
    assert sorted(names) == ["a", "a", "a", "b", "b", "b"]
    assert all(names[i] != names[i + 1] for i in range(5))
    lines = logs.wait(6)
    assert {app for app, _ in lines} == {"app"}
    dynos = [line.split(" dyno=")[1].split()[0] for _, line in lines]
    assert sorted(dynos) == ["web.1", "web.1", "web.1", "web.2", "web.2", "web.2"]


def test_upstream_connections_are_kept_alive(
    router: Router, client: httpx.Client, upstreams: tuple[str, str]
) -> None:
    router.set_routes({"app.localhost": up("app", upstreams[0])})
    ports = {get(client, Connection="close").json()["peer_port"] for _ in range(8)}
    assert len(ports) <= os.cpu_count()  # one upstream connection per nginx worker


def test_forwarding_headers(
    router: Router, client: httpx.Client, upstreams: tuple[str, str], settings: Settings
) -> None:
    router.set_routes({"app.localhost": up("app", upstreams[0])})
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


def test_log_line_is_in_heroku_format(
    router: Router, client: httpx.Client, upstreams: tuple[str, str], logs: LogLines
) -> None:
    router.set_routes({"app.localhost": up("app", upstreams[0])})
    get(client, path='/some/path?q="x"', **{"X-Request-Id": "logged-request-id-0123456789",
                                            "X-Forwarded-For": 'evil" at=info'})
    app, line = logs.wait(1)[0]
    assert app == "app"
    assert line.startswith('at=info method=GET path="/some/path?q=%22x%22" host=app.localhost ')
    assert "request_id=logged-request-id-0123456789" in line
    assert 'fwd="evil\\x22 at=info, 127.0.0.1" dyno=web.1 ' in line
    assert " status=200 " in line and line.endswith(" protocol=http")
    assert "connect=" in line and "ms service=" in line


def test_heroku_error_codes_have_pages_and_log_lines(
    router: Router, client: httpx.Client, upstreams: tuple[str, str], logs: LogLines
) -> None:
    dead = f"127.0.0.1:{free_port()}"
    router.set_routes({
        "idle.localhost": Route("idle", "idle"),
        "crashed.localhost": Route("crashed", "crashed"),
        "refused.localhost": up("refused", dead, dead),
        "slow.localhost": up("slow", upstreams[0]),
        "rude.localhost": up("rude", upstreams[0]),
        "down.localhost": Route("down", "maintenance", up("x", upstreams[0]).peers),
    })
    cases = [
        ("idle.localhost", "/", "H14", "No web processes running", "error"),
        ("crashed.localhost", "/", "H10", "App crashed", "error"),
        ("refused.localhost", "/", "H10", "App crashed", "error"),
        ("slow.localhost", "/slow", "H12", "Request timeout", "error"),
        ("rude.localhost", "/close", "H13", "Connection closed without response", "error"),
        ("down.localhost", "/", "H80", "Maintenance mode", "info"),
    ]
    for host, path, code, desc, at in cases:
        response = get(client, host, path)
        assert response.status_code == 503, (host, response.text)
        assert response.headers["content-type"].startswith("text/html")
        assert "<h1>" in response.text
        app, line = logs.wait(1)[0]
        assert app == host.split(".")[0]
        assert line.startswith(f'at={at} code={code} desc="{desc}" method=GET path="{path}"')
        assert " status=503 " in line
    assert "Offline for maintenance" in get(client, "down.localhost").text
    assert "timed out" in get(client, "slow.localhost", "/slow").text
    assert "ps:scale web=1" in get(client, "idle.localhost").text


def test_request_body_over_the_limit_is_refused(
    router: Router, client: httpx.Client, upstreams: tuple[str, str], logs: LogLines
) -> None:
    router.set_routes({"app.localhost": up("app", upstreams[0])})
    body = os.urandom(3 * 1024 * 1024)
    response = client.post("/upload", content=body, headers={"Host": "app.localhost"})
    assert response.json() == {"name": "a", "received": len(body)}
    too_big = client.post("/upload", content=os.urandom(5 * 1024 * 1024),
                          headers={"Host": "app.localhost"})
    assert too_big.status_code == 413
    assert "Request too large" in too_big.text
    app, line = logs.wait(2)[1]
    assert app == "app"
    assert line.startswith('at=error desc="Request body too large" method=POST ')
    assert " status=413 " in line


def test_wildcard_domains_route_by_the_most_specific_name(
    router: Router, client: httpx.Client, upstreams: tuple[str, str]
) -> None:
    router.set_routes({
        "*.example.com": up("wild", upstreams[0]),
        "www.example.com": up("www", upstreams[1]),
        "*.api.example.com": up("api", upstreams[1]),
    })
    assert get(client, "shop.example.com").json()["name"] == "a"
    assert get(client, "deep.shop.example.com").json()["name"] == "a"
    assert get(client, "WWW.Example.com.").json()["name"] == "b"
    assert get(client, "v1.api.example.com").json()["name"] == "b"
    assert get(client, "example.com").status_code == 404


def test_route_change_needs_no_reload(
    router: Router, client: httpx.Client, upstreams: tuple[str, str]
) -> None:
    router.set_routes({"app.localhost": up("app", upstreams[0])})
    assert get(client).json()["name"] == "a"
    master = router.pid()
    assert master is not None
    workers = worker_pids(master)
    router.set_routes({"app.localhost": up("app", upstreams[1]),
                       "other.localhost": up("other", upstreams[0])})
    assert [get(client).json()["name"] for _ in range(3)] == ["b", "b", "b"]
    assert get(client, "other.localhost").json()["name"] == "a"
    router.set_routes({"other.localhost": up("other", upstreams[0])})
    assert get(client).status_code == 404
    assert router.get_routes() == {"other.localhost": up("other", upstreams[0])}
    assert router.pid() == master
    assert worker_pids(master) == workers


def test_dead_peer_is_skipped(
    router: Router, client: httpx.Client, upstreams: tuple[str, str]
) -> None:
    dead = f"127.0.0.1:{free_port()}"
    router.set_routes({"app.localhost": up("app", dead, upstreams[0], dead)})
    for _ in range(6):
        response = get(client)
        assert response.status_code == 200
        assert response.json()["name"] == "a"


def test_websocket_upgrade(
    router: Router, upstreams: tuple[str, str], settings: Settings
) -> None:
    router.set_routes({"app.localhost": up("app", upstreams[0])})
    with socket.create_connection(("127.0.0.1", settings.router_port), timeout=5) as sock:
        sock.sendall(
            b"GET /ws HTTP/1.1\r\nHost: app.localhost\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\n\r\n"
        )
        with sock.makefile("rb") as stream:
            assert stream.readline().startswith(b"HTTP/1.1 101")
            while stream.readline() not in (b"\r\n", b""):
                pass
            sock.sendall(b"hello over the tunnel\n")
            assert stream.readline() == b"echo:hello over the tunnel\n"


def test_bad_routes_are_refused(router: Router) -> None:
    good = {"app.localhost": up("app", "10.213.1.2:5000")}
    router.set_routes(good)
    for routes in ({"bad host": Route("app")}, {"app.localhost": up("app", "example.com:80")},
                   {"app.localhost": Route("app", "sideways")},
                   {"app.localhost": Route("app", "up", (Peer("10.0.0.1:5000", "a b"),))}):
        with pytest.raises(Invalid):
            router.set_routes(routes)
    assert router.get_routes() == good


def tls_get(port: int, hostname: str, ca_pem: str) -> str:
    context = ssl.create_default_context(cadata=ca_pem)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname=hostname) as tls:
        tls.sendall(f"GET /tls HTTP/1.1\r\nHost: {hostname}\r\nConnection: close\r\n\r\n"
                    .encode())
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
    return data.decode()


def tls_ok(port: int, hostname: str, ca_pem: str) -> bool:
    try:
        return "HTTP/1.1 200" in tls_get(port, hostname, ca_pem)
    except OSError:
        return False


def test_tls_by_sni_and_a_rejected_config_is_never_applied(
    router: Router, upstreams: tuple[str, str], settings: Settings
) -> None:
    cert_pem, key_pem = make_cert("secure.example.com")
    router.set_routes({"secure.example.com": up("secure", upstreams[0])})
    master = router.pid()
    router.ensure_running((Cert("secure-cert-1", ("secure.example.com",), cert_pem, key_pem),))
    assert router.pid() == master and router.reloads == 1
    port = settings.router_tls_port
    wait_for(lambda: tls_ok(port, "secure.example.com", cert_pem))
    body = tls_get(port, "secure.example.com", cert_pem).split("\r\n\r\n", 1)[1]
    headers = json.loads(body)["headers"]
    assert headers["X-Forwarded-Proto"] == "https"
    assert headers["X-Forwarded-Port"] == str(port)
    other_pem, _ = make_cert("other.example.com")
    with pytest.raises(ssl.SSLError):
        tls_get(port, "other.example.com", other_pem)  # no certificate: handshake refused

    _, wrong_key = make_cert("secure.example.com")
    bad = Cert("secure-cert-2", ("secure.example.com",), cert_pem, wrong_key)
    with pytest.raises(ConfigRejected, match="nginx rejected"):
        router.ensure_running((bad,))
    assert router.reloads == 1
    assert "HTTP/1.1 200" in tls_get(port, "secure.example.com", cert_pem)
    # nginx killed while the bad config is wanted: it comes back with the last good one.
    os.kill(router.pid() or 0, signal.SIGKILL)
    wait_for(lambda: not router.running())
    with pytest.raises(ConfigRejected):
        router.ensure_running()
    assert router.running()
    router.set_routes({"secure.example.com": up("secure", upstreams[0])})
    assert "HTTP/1.1 200" in tls_get(port, "secure.example.com", cert_pem)


def test_ensure_is_idempotent_and_stop_is_graceful(router: Router, settings: Settings) -> None:
    master = router.pid()
    assert router.ensure_running() is False
    assert router.pid() == master
    assert router.running()
    assert Router(settings).pid() == master  # a new control plane adopts it via the pid file
    router.stop()
    assert not router.running()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{settings.router_port}/")
    router.stop()


def test_ensure_restarts_a_killed_nginx(
    router: Router, client: httpx.Client, upstreams: tuple[str, str]
) -> None:
    router.set_routes({"app.localhost": up("app", upstreams[0])})
    master = router.pid()
    assert master is not None
    workers = worker_pids(master)
    os.kill(master, signal.SIGKILL)
    wait_for(lambda: not router.running())
    assert router.ensure_running() is True
    assert router.running()
    assert router.pid() != master
    assert not any(alive(pid) for pid in workers)  # orphaned workers no longer hold the ports
    assert router.get_routes() == {}
    router.set_routes({"app.localhost": up("app", upstreams[1])})
    assert get(client).json()["name"] == "b"


# -- main(): the router process ------------------------------------------------------------


class FakeApi(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        api = self.server
        ok = self.headers.get("Authorization") == f"Bearer {api.token}"  # type: ignore[attr-defined]
        if self.path != "/v1/internal/routes" or not ok or api.failing:  # type: ignore[attr-defined]
            self.send_error(503 if ok else 401)
            return
        body = json.dumps({"routes": api.routes, "generation": api.generation,  # type: ignore[attr-defined]
                           "certificates": api.certificates}).encode()  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    sock = tmp_path / "redis.sock"
    proc = subprocess.Popen(
        ["redis-server", "--port", "0", "--unixsocket", str(sock), "--save", "",
         "--appendonly", "no", "--daemonize", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
    )
    wait_for(sock.exists)
    yield f"unix://{sock}"
    proc.terminate()
    proc.wait(timeout=10)


def api_route(app: str, *addrs: str) -> dict[str, object]:
    return {"app": app, "mode": "up",
            "peers": [{"addr": a, "dyno": f"web.{i}"} for i, a in enumerate(addrs, 1)]}


def test_main_applies_the_api_route_table_and_ships_logs(
    settings: Settings,
    redis_url: str,
    upstreams: tuple[str, str],
    client: httpx.Client,
) -> None:
    import redis

    api = serve(FakeApi, "api")
    api.token = "service-token-for-tests"  # type: ignore[attr-defined]
    api.failing = True  # type: ignore[attr-defined]
    api.generation = 7  # type: ignore[attr-defined]
    api.certificates = []  # type: ignore[attr-defined]
    api.routes = {"app.localhost": api_route("app", upstreams[0])}  # type: ignore[attr-defined]
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
    publisher = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        wait_for(router.running, timeout=10)
        time.sleep(1.5)  # a few polls against a failing API: logged, not fatal
        assert proc.poll() is None
        api.failing = False  # type: ignore[attr-defined]
        wait_for(lambda: get(client).status_code == 200)
        assert get(client).json()["name"] == "a"
        wait_for(lambda: publisher.get("paas:routes:applied") == "7")

        for peer, name in ((upstreams[1], "b"), (upstreams[0], "a"), (upstreams[1], "b")):
            api.routes = {"app.localhost": api_route("app", peer)}  # type: ignore[attr-defined]
            publisher.publish("paas:routes", "changed")
            wait_for(lambda: router.get_routes() == {"app.localhost": up("app", peer)})  # noqa: B023
            assert get(client).json()["name"] == name

        # Router lines reach the app's log stream, and its figures.
        wait_for(lambda: publisher.xlen("logs:app") >= 5)
        entry = publisher.xrange("logs:app")[-1][1]
        assert entry["source"] == "router"
        assert entry["line"].startswith("at=info method=GET path=")
        assert " dyno=web.1 " in entry["line"]
        from paas import metrics

        figures = metrics.read(publisher, "app", 5)
        assert figures["requests"] >= 5 and figures["status"]["2xx"] >= 5
        assert figures["p50_ms"] is not None

        # A burst of certificate changes: one reload.
        pems = [make_cert("app.localhost") for _ in range(3)]
        master = router.pid()
        for i, (cert_pem, key_pem) in enumerate(pems):
            api.certificates = [{"name": f"c{i}", "hostnames": ["app.localhost"],  # type: ignore[attr-defined]
                                 "cert": cert_pem, "key": key_pem}]
            publisher.publish("paas:routes", "changed")
            time.sleep(0.1)
        last = pems[-1][0]
        wait_for(lambda: last in " ".join(p.read_text() for p in router.certs_dir.glob("*.crt")),
                 timeout=5)
        assert router.pid() == master
        stderr = stderr_path.read_text()
        assert stderr.count("at=info certificates=1") <= 2, stderr

        # nginx killed while the API is down: back with the last good config and routes.
        api.failing = True  # type: ignore[attr-defined]
        time.sleep(1.5)
        os.kill(master or 0, signal.SIGKILL)
        wait_for(lambda: router.pid() not in (None, master), timeout=5)
        wait_for(lambda: router.get_routes() == {"app.localhost": up("app", upstreams[1])})
        assert last in " ".join(p.read_text() for p in router.certs_dir.glob("*.crt"))
        assert str(router.certs_dir) in router.conf_path.read_text()

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert router.running()  # nginx outlives the control plane
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        print(stderr_path.read_text())  # shown when the test fails
        publisher.close()
        router.stop()
        api.shutdown()
        api.server_close()
    stderr = stderr_path.read_text()
    failures = [line for line in stderr.splitlines() if "what=api" in line and "error" in line]
    assert len(failures) == 2, stderr  # once per outage, not once per poll


# -- ACME http-01 challenges and HTTPS redirects (automatic HTTPS) ----------------------------

TOKEN = "tok_en-1" + "x" * 35
KEY_AUTH = TOKEN + ".thumb_print-2"


def challenge_path(token: str = TOKEN) -> str:
    return f"/.well-known/acme-challenge/{token}"


def test_the_router_answers_challenges_for_their_host_whatever_the_app_state(
        router: Router, client: httpx.Client, upstreams: tuple[str, str]) -> None:
    a, _ = upstreams
    router.set_routes({
        "up.example.com": Route("up", "up", (Peer(a, "web.1"),)),
        "off.example.com": Route("off", "maintenance"),
        "idle.example.com": Route("idle", "idle"),
        "down.example.com": Route("down", "crashed"),
    })
    challenges = tuple(Challenge(f"{name}.example.com", f"{TOKEN}{name}", f"{TOKEN}{name}.tp")
                       for name in ("up", "off", "idle", "down"))
    router.set_challenges(challenges)
    assert router.get_challenges() == tuple(sorted(challenges, key=lambda c: c.token))
    for name in ("up", "off", "idle", "down"):
        answer = get(client, f"{name}.example.com", challenge_path(f"{TOKEN}{name}"))
        assert (answer.status_code, answer.text) == (200, f"{TOKEN}{name}.tp")
        assert answer.headers["content-type"] == "text/plain"
    # Another host's token, or an unknown one, is not the router's: the app (or its page).
    assert get(client, "off.example.com", challenge_path(f"{TOKEN}up")).status_code == 503
    assert get(client, "up.example.com", challenge_path("unknown")).json()["name"] == "a"
    assert get(client, "nowhere.example.com", challenge_path(f"{TOKEN}up")).status_code == 404
    # Replaced as a whole, with no reload.
    reloads = router.reloads
    router.set_challenges(())
    assert get(client, "up.example.com", challenge_path(f"{TOKEN}up")).json()["name"] == "a"
    assert router.reloads == reloads


def test_bad_challenges_are_refused(router: Router, settings: Settings) -> None:
    with pytest.raises(Invalid):
        router.set_challenges((Challenge("a.example.com", "bad token", KEY_AUTH),))
    with pytest.raises(Invalid):
        router.set_challenges((Challenge("*.example.com", TOKEN, KEY_AUTH),))
    answer = router.control.put(router.challenges_url, content=b"only two\n")
    assert answer.status_code == 400 and "bad challenge line" in answer.text
    stranger = httpx.put(router.challenges_url, content=f"{TOKEN} a.example.com {KEY_AUTH}\n")
    assert stranger.status_code == 403
    assert router.get_challenges() == ()


def test_https_redirect_and_hsts_but_never_for_a_challenge(
        router: Router, client: httpx.Client, settings: Settings,
        upstreams: tuple[str, str]) -> None:
    a, _ = upstreams
    cert_pem, key_pem = make_cert("safe.example.com")
    router.ensure_running((Cert("safe", ("safe.example.com",), cert_pem, key_pem),))
    router.set_routes({
        "safe.example.com": Route("safe", "up", (Peer(a, "web.1"),), https_redirect=True,
                                  hsts_max_age=600),
        "plain.example.com": Route("plain", "up", (Peer(a, "web.1"),)),
    })
    router.set_challenges((Challenge("safe.example.com", TOKEN, KEY_AUTH),))
    moved = get(client, "safe.example.com", "/x?y=1")
    assert moved.status_code == 308
    assert moved.headers["location"] == \
        f"https://safe.example.com:{settings.router_tls_port}/x?y=1"
    assert "strict-transport-security" not in moved.headers
    assert get(client, "safe.example.com", challenge_path()).text == KEY_AUTH
    assert get(client, "plain.example.com").status_code == 200
    wait_for(lambda: tls_ok(settings.router_tls_port, "safe.example.com", cert_pem))
    secure = tls_get(settings.router_tls_port, "safe.example.com", cert_pem)
    assert "Strict-Transport-Security: max-age=600" in secure
