"""The router end to end: real nginx in front of real runc dynos. Domains and wildcards,
spread over dynos, headers, WebSocket, TLS, Heroku's error codes with pages and log lines,
maintenance mode, router lines in `paas logs`, and no failed request while an app changes."""

from __future__ import annotations

import base64
import json
import os
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import httpx
import pytest

from tests.platform import Platform, app_repo, commit_all, git
from tests.tls import make_cert

pytestmark = pytest.mark.e2e
T = TypeVar("T")


def deploy(platform: Platform, app: str, tmp: Path, sample: str) -> Path:
    platform.paas("apps:create", app)
    repo = app_repo(tmp, sample)
    push(platform, repo, app)
    return repo


def push(platform: Platform, repo: Path, app: str) -> None:
    result = git(repo, "push", platform.remote_url(app), "main", check=False)
    assert result.returncode == 0, result.stderr


def visit(platform: Platform, host: str, path: str = "/", **headers: str) -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{platform.router_port}{path}",
                     headers={"Host": host, **headers}, timeout=30)


def eventually(get: Callable[[], T], ok: Callable[[T], bool], timeout: float = 10) -> T:
    """The router applies changes within a second or so of the API call: wait for it."""
    deadline = time.monotonic() + timeout
    while not ok(value := get()) and time.monotonic() < deadline:
        time.sleep(0.2)
    return value


def router_lines(platform: Platform, app: str) -> list[str]:
    entries = json.loads(platform.paas("logs", "-a", app, "-n", "300", "--json").stdout)
    return [e["line"] for e in entries if e.get("source") == "router"]


def wait_for_line(platform: Platform, app: str, text: str, timeout: float = 10) -> str:
    deadline = time.monotonic() + timeout
    while True:
        found = [line for line in router_lines(platform, app) if text in line]
        if found:
            return found[-1]
        if time.monotonic() > deadline:
            raise AssertionError(f"no router line with {text!r} in {app}'s log: "
                                 f"{router_lines(platform, app)[-5:]}")
        time.sleep(0.3)


def test_domains_dynos_headers_websocket_maintenance_and_logs(
        platform: Platform, tmp_path: Path) -> None:
    deploy(platform, "rprobe", tmp_path, "router-probe")
    platform.paas("ps:scale", "web=3", "-a", "rprobe")
    deadline = time.monotonic() + 60
    seen: Counter[str] = Counter()
    while len(seen) < 3 and time.monotonic() < deadline:
        seen[platform.get("rprobe").json()["dyno"]] += 1
    assert set(seen) == {"web.1", "web.2", "web.3"}

    # Headers, as Heroku sends them.
    response = visit(platform, "rprobe.localhost", "/h", **{"X-Forwarded-For": "198.51.100.9"})
    headers = {k.lower(): v for k, v in response.json()["headers"].items()}
    assert headers["host"] == "rprobe.localhost"
    assert headers["x-forwarded-for"] == "198.51.100.9, 127.0.0.1"
    assert headers["x-forwarded-proto"] == "http"
    assert headers["x-forwarded-port"] == str(platform.router_port)
    assert headers["via"] == "1.1 paas" and len(headers["x-request-id"]) == 32
    assert abs(int(headers["x-request-start"]) - time.time() * 1000) < 60_000

    # Custom domains and wildcards; one app per domain; bad names refused.
    platform.paas("apps:create", "rother")
    platform.paas("domains:add", "www.probe.test", "-a", "rprobe")
    platform.paas("domains:add", "*.wild.test", "-a", "rprobe")
    taken = platform.paas("domains:add", "www.probe.test", "-a", "rother", check=False)
    assert taken.returncode != 0 and "already in use by another app" in taken.stderr
    bad = platform.paas("domains:add", "not a domain!", "-a", "rprobe", check=False)
    assert bad.returncode != 0 and "not a valid domain name" in bad.stderr
    listed = platform.paas("domains", "-a", "rprobe").stdout
    assert "www.probe.test" in listed and "*.wild.test" in listed
    assert "rprobe.localhost" in listed
    for host in ("www.probe.test", "shop.wild.test", "a.b.wild.test"):
        served = eventually(lambda: visit(platform, host), lambda r: r.status_code == 200)  # noqa: B023
        assert served.json()["headers"]["Host"] == host
    platform.paas("domains:remove", "www.probe.test", "-a", "rprobe")
    gone = eventually(lambda: visit(platform, "www.probe.test"), lambda r: r.status_code != 200)
    assert gone.status_code == 404 and "No such app" in gone.text
    platform.paas("apps:destroy", "rother", "--confirm", "rother")

    # WebSocket: the upgrade and frames pass through.
    assert websocket_echo(platform.router_port, "rprobe.localhost", "hi there") == \
        "echo: hi there"

    # Maintenance mode: H80 with its page, then back.
    platform.paas("maintenance:on", "-a", "rprobe")
    down = eventually(lambda: platform.get("rprobe"), lambda r: r.status_code != 200)
    assert down.status_code == 503 and "Offline for maintenance" in down.text
    assert platform.paas("maintenance", "-a", "rprobe").stdout.strip() == "on"
    platform.paas("maintenance:off", "-a", "rprobe")
    assert eventually(lambda: platform.get("rprobe"), lambda r: r.status_code == 200)

    # Router lines in the app's log stream, Heroku format, with the dyno's name.
    line = wait_for_line(platform, "rprobe", 'path="/h"')
    assert line.startswith('at=info method=GET path="/h" host=rprobe.localhost ')
    assert " dyno=web." in line and " status=200 " in line and "protocol=http" in line
    h80 = wait_for_line(platform, "rprobe", "code=H80")
    assert h80.startswith('at=info code=H80 desc="Maintenance mode" ')
    info = platform.paas("apps:info", "-a", "rprobe").stdout
    assert "Requests:" in info and "Domains:" in info and "*.wild.test" in info
    with platform.api() as api:
        figures = api.get("/v1/apps/rprobe/metrics").json()
    assert figures["requests"] >= 10 and figures["status"]["2xx"] >= 10
    platform.paas("apps:destroy", "rprobe", "--confirm", "rprobe")


def websocket_echo(port: int, host: str, text: str) -> str:
    key = base64.b64encode(os.urandom(16)).decode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET /ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
                     f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n".encode())
        with sock.makefile("rb") as stream:
            assert stream.readline().startswith(b"HTTP/1.1 101")
            while stream.readline() not in (b"\r\n", b""):
                pass
            mask = os.urandom(4)
            data = text.encode()
            sock.sendall(bytes([0x81, 0x80 | len(data)]) + mask
                         + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))
            head = stream.read(2)
            return stream.read(head[1] & 0x7F).decode()


def test_heroku_error_codes_with_pages_and_log_lines(platform: Platform,
                                                     tmp_path: Path) -> None:
    deploy(platform, "rerrors", tmp_path, "router-probe")
    platform.wait_for("rerrors", "web.1")
    cases = [("/sleep?s=12", "H12", "Request timeout", "timed out"),
             ("/close", "H13", "Connection closed without response", "closed the connection")]
    for path, code, desc, page in cases:
        response = platform.get("rerrors", path)
        assert response.status_code == 503 and page in response.text
        line = wait_for_line(platform, "rerrors", f"code={code}")
        assert line.startswith(f'at=error code={code} desc="{desc}" method=GET path="{path}"')
        assert " dyno=web.1 " in line and " status=503 " in line

    exiting = platform.get("rerrors", "/exit")  # the dyno exits mid-request; the retry
    assert exiting.status_code == 503  # finds nothing listening (H10), or is H13
    crashed = platform.get("rerrors")  # before its restart (backoff): nothing listens
    assert crashed.status_code == 503 and "crashed" in crashed.text
    wait_for_line(platform, "rerrors", 'at=error code=H10 desc="App crashed"')

    platform.wait_for("rerrors", "web.1")
    platform.paas("ps:scale", "web=0", "-a", "rerrors")
    platform.wait_for("rerrors", "No web processes running")
    response = platform.get("rerrors")
    assert response.status_code == 503
    wait_for_line(platform, "rerrors", 'at=error code=H14 desc="No web processes running"')

    unknown = visit(platform, "nothing-here.localhost")
    assert unknown.status_code == 404 and "No such app" in unknown.text
    platform.paas("apps:destroy", "rerrors", "--confirm", "rerrors")


def https_get(port: int, hostname: str, ca_pem: str) -> str:
    context = ssl.create_default_context(cadata=ca_pem)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname=hostname) as tls:
        tls.sendall(f"GET /tls HTTP/1.1\r\nHost: {hostname}\r\nConnection: close\r\n\r\n"
                    .encode())
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
    return data.decode()


def test_tls_certificates_by_sni(platform: Platform, tmp_path: Path) -> None:
    deploy(platform, "rtls", tmp_path, "router-probe")
    platform.paas("domains:add", "secure.probe.test", "-a", "rtls")
    cert_pem, key_pem = make_cert("secure.probe.test", days=90)
    (tmp_path / "cert.pem").write_text(cert_pem)
    (tmp_path / "key.pem").write_text(key_pem)
    _, other_key = make_cert("secure.probe.test")
    (tmp_path / "other.key").write_text(other_key)
    stranger_cert, stranger_key = make_cert("elsewhere.test")
    (tmp_path / "stranger.pem").write_text(stranger_cert)
    (tmp_path / "stranger.key").write_text(stranger_key)

    mismatch = platform.paas("certs:add", str(tmp_path / "cert.pem"),
                             str(tmp_path / "other.key"), "-a", "rtls", check=False)
    assert mismatch.returncode != 0 and "does not match the key" in mismatch.stderr
    stranger = platform.paas("certs:add", str(tmp_path / "stranger.pem"),
                             str(tmp_path / "stranger.key"), "-a", "rtls", check=False)
    assert stranger.returncode != 0 and "none of rtls's domains" in stranger.stderr

    added = platform.paas("certs:add", str(tmp_path / "cert.pem"), str(tmp_path / "key.pem"),
                          "-a", "rtls")
    assert "secure.probe.test" in added.stdout
    listing = platform.paas("certs", "-a", "rtls").stdout
    assert "secure.probe.test" in listing and " days)" in listing
    port = int(platform.env["PAAS_ROUTER_TLS_PORT"])
    deadline = time.monotonic() + 15
    while True:
        try:
            answer = https_get(port, "secure.probe.test", cert_pem)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)
    assert answer.startswith("HTTP/1.1 200")
    headers = json.loads(answer.split("\r\n\r\n", 1)[1])["headers"]
    assert headers["X-Forwarded-Proto"] == "https"
    assert headers["X-Forwarded-Port"] == str(port)
    platform.paas("apps:destroy", "rtls", "--confirm", "rtls")


class Load:
    """A bounded request loop: `rate` requests a second, alternately on one kept-alive
    connection and on a fresh one, until stopped (or `limit` seconds)."""

    def __init__(self, url: str, host: str, rate: int = 50, limit: float = 150) -> None:
        self.url, self.host, self.rate, self.limit = url, host, rate, limit
        self.ok = 0
        self.failures: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Load:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(60)

    def _run(self) -> None:
        start = time.monotonic()
        n = 0
        with httpx.Client(timeout=10) as kept:
            while not self.stop.is_set() and time.monotonic() - start < self.limit:
                try:
                    if n % 2:
                        response = kept.get(self.url, headers={"Host": self.host})
                    else:
                        response = httpx.get(self.url, headers={"Host": self.host,
                                                                "Connection": "close"},
                                             timeout=10)
                    if response.status_code == 200 and "procfile-only" in response.text:
                        self.ok += 1
                    else:
                        self.failures.append(f"{response.status_code} {response.text[:200]}")
                except httpx.HTTPError as exc:
                    self.failures.append(f"{time.strftime('%H:%M:%S')} {exc!r}")
                n += 1
                time.sleep(max(0.0, start + n / self.rate - time.monotonic()))


def test_no_request_fails_while_the_app_is_deployed_scaled_and_given_a_domain(
        platform: Platform, tmp_path: Path) -> None:
    repo = deploy(platform, "rsteady", tmp_path, "procfile-only")
    platform.wait_for("rsteady", "Procfile-only app")
    url = f"http://127.0.0.1:{platform.router_port}/"
    with Load(url, "rsteady.localhost") as load:
        time.sleep(2)
        for n in range(3):
            (repo / "index.html").write_text(
                (repo / "index.html").read_text() + f"<!-- deploy {n} -->\n")
            commit_all(repo, f"deploy {n}")
            push(platform, repo, "rsteady")
            if n == 0:
                platform.paas("ps:scale", "web=3", "-a", "rsteady")
                wait_up(platform, "rsteady", 3)
            if n == 1:
                platform.paas("domains:add", "steady.probe.test", "-a", "rsteady")
        platform.paas("ps:scale", "web=1", "-a", "rsteady")
        wait_up(platform, "rsteady", 1)
        time.sleep(3)
    errors = [line for line in router_lines(platform, "rsteady") if "at=error" in line]
    if load.failures:
        errors.append(direct_probe(platform, "rsteady"))
    assert load.failures == [], (f"{len(load.failures)} failed of "
                                 f"{load.ok + len(load.failures)}: "
                                 f"{Counter(f[:120] for f in load.failures)} {errors}\n"
                                 f"{platform.paas('logs', '-a', 'rsteady', '-n', '400').stdout}")
    assert load.ok > 200
    assert "deploy 2" in visit(platform, "steady.probe.test").text
    platform.paas("apps:destroy", "rsteady", "--confirm", "rsteady")


def direct_probe(platform: Platform, app: str) -> str:
    """On failure, for the report: each routed dyno asked directly (its bridge address)."""
    token = (platform.home / "service-token").read_text().strip()
    routes = httpx.get(f"{platform.api_url}/v1/internal/routes",
                       headers={"Authorization": f"Bearer {token}"}).json()["routes"]
    answers = []
    for peer in routes[f"{app}.localhost"]["peers"]:
        try:
            status = httpx.get(f"http://{peer['addr']}/", timeout=5).status_code
        except httpx.HTTPError as exc:
            status = repr(exc)
        answers.append(f"{peer['dyno']} {peer['addr']}: {status}")
    return "direct: " + "; ".join(answers)


def wait_up(platform: Platform, app: str, count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dynos = json.loads(platform.paas("ps", "-a", app, "--json").stdout)
        if len([d for d in dynos if d["type"] == "web" and d["state"] == "up"]) == count:
            return
        time.sleep(0.3)
    raise AssertionError(f"{app} never had {count} web dynos up: {dynos}")
