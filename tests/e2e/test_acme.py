"""Automatic HTTPS end to end, on a real ACME CA (Pebble, started once per session): a domain
added gets a certificate that `curl --cacert <Pebble's root>` accepts; renewals (30-day-40-s
certificates renew 40 s after issuance) replace it with no failed request under load, also in
maintenance mode and with no web dynos; a challenge the CA cannot reach fails with its
reason and is retried with backoff; HTTP → HTTPS redirects (never for challenges); a removed
domain loses its certificate; uploaded certificates win; wildcards say they need dns-01; a
lost account key is replaced by a new account.

The orderer is the `acme-orders` platform job (paas/platform_jobs.py), run by the platform's
own clock (paas/clock.py, in the API process) every PAAS_ACME_INTERVAL."""

from __future__ import annotations

import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from cryptography import x509

from tests.pebble import Pebble
from tests.platform import Platform, app_repo, git
from tests.tls import make_cert

pytestmark = pytest.mark.e2e
T = TypeVar("T")
DOMAIN = "apps.example"  # the platform's PAAS_DOMAIN: public, so <app>.apps.example gets one


class ClockRuns:
    """The platform's clock (in its API process) runs the acme-orders platform job; at the
    end, its last run must not have failed."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform

    def failures(self) -> list[str]:
        with self.platform.api() as api:
            jobs = {job["name"]: job for job in api.get("/v1/admin/jobs").json()}
        last = jobs["acme-orders"]["last_run"]
        assert last is not None, "the clock never ran acme-orders"
        return [last["summary"]] if last["state"] == "failed" else []


@pytest.fixture(scope="module")
def acme(pebble: Pebble) -> Iterator[tuple[Platform, ClockRuns]]:
    platform = Platform.create(
        PAAS_ROUTER_PORT=str(pebble.http_port), PAAS_DOMAIN=DOMAIN,
        PAAS_ACME_DIRECTORY=pebble.directory, PAAS_ACME_CA_BUNDLE=str(pebble.listener_ca),
        PAAS_ACME_EMAIL="ops@example.com", PAAS_ACME_RETRY="2", PAAS_ACME_INTERVAL="1")
    try:
        platform.up()
        runner = ClockRuns(platform)
        yield platform, runner
        assert runner.failures() == []
    finally:
        platform.down()


def eventually(get: Callable[[], T], ok: Callable[[T], bool], timeout: float = 60,
               what: str = "") -> T:
    deadline = time.monotonic() + timeout
    while not ok(value := get()):
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached in {timeout} s: {what}; last: {value!r}")
        time.sleep(0.3)
    return value


def status(platform: Platform, app: str, hostname: str) -> dict[str, Any]:
    with platform.api() as api:
        entries = api.get(f"/v1/apps/{app}/acm").raise_for_status().json()["domains"]
    found = [e for e in entries if e["hostname"] == hostname]
    return found[0] if found else {"state": "absent"}


def wait_state(platform: Platform, app: str, hostname: str, state: str,
               timeout: float = 60) -> dict[str, Any]:
    return eventually(lambda: status(platform, app, hostname), lambda e: e["state"] == state,
                      timeout, f"{hostname} {state}")


def tls_port(platform: Platform) -> int:
    return int(platform.env["PAAS_ROUTER_TLS_PORT"])


def https(platform: Platform, pebble: Pebble, host: str, path: str = "/"
          ) -> tuple[int, str, int]:
    """(status, response text, the served certificate's serial), trusting Pebble's root."""
    context = ssl.create_default_context(cafile=str(pebble.issuing_root))
    with socket.create_connection(("127.0.0.1", tls_port(platform)), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname=host) as tls:
        der = tls.getpeercert(binary_form=True)
        assert der is not None
        tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
                    .encode())
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
    text = data.decode(errors="replace")
    return int(text.split(" ", 2)[1]), text, x509.load_der_x509_certificate(der).serial_number


def serial(platform: Platform, pebble: Pebble, host: str) -> int:
    return https(platform, pebble, host)[2]


def http(platform: Platform, host: str, path: str = "/") -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{platform.router_port}{path}", headers={"Host": host},
                     timeout=30)


def curl(platform: Platform, pebble: Pebble, host: str) -> subprocess.CompletedProcess[str]:
    port = tls_port(platform)
    return subprocess.run(["curl", "-sS", "--max-time", "20", "--cacert",
                           str(pebble.issuing_root), "--resolve", f"{host}:{port}:127.0.0.1",
                           f"https://{host}:{port}/"], capture_output=True, text=True)


def deploy(platform: Platform, app: str, tmp: Path) -> None:
    platform.paas("apps:create", app)
    repo = app_repo(tmp, "router-probe")
    result = git(repo, "push", platform.remote_url(app), "main", check=False)
    assert result.returncode == 0, result.stderr


def test_a_domain_added_gets_a_certificate_from_the_ca(
        acme: tuple[Platform, ClockRuns], pebble: Pebble, tmp_path: Path) -> None:
    platform, _ = acme
    deploy(platform, "shop", tmp_path)
    refused = platform.paas("domains:add", "www..shop.test", "-a", "shop", check=False)
    assert refused.returncode != 0 and "not a valid domain name" in refused.stderr
    platform.paas("domains:add", "www.shop.test", "-a", "shop")
    issued = wait_state(platform, "shop", "www.shop.test", "issued")
    assert issued["expires_at"] > time.time() + 29 * 86400
    # Served once the router reloaded nginx with it (at most a second or so).
    answer = eventually(lambda: curl(platform, pebble, "www.shop.test"),
                        lambda r: r.returncode == 0, timeout=15, what="curl over HTTPS")
    assert '"dyno": "web.1"' in answer.stdout or '"dyno":"web.1"' in answer.stdout
    # The platform's own name under a public PAAS_DOMAIN: one certificate for the app.
    wait_state(platform, "shop", f"shop.{DOMAIN}", "issued")
    eventually(lambda: curl(platform, pebble, f"shop.{DOMAIN}"), lambda r: r.returncode == 0,
               timeout=15, what="curl over HTTPS to the platform's name")
    # Untrusted without Pebble's root: a real chain, not a self-signed stand-in.
    plain = subprocess.run(["curl", "-sS", "--resolve",
                            f"www.shop.test:{tls_port(platform)}:127.0.0.1",
                            f"https://www.shop.test:{tls_port(platform)}/"],
                           capture_output=True, text=True)
    assert plain.returncode != 0
    listing = platform.paas("certs:auto", "-a", "shop").stdout
    assert "www.shop.test" in listing and "issued (expires" in listing
    # The account key is the platform's secret: root's, 0600, in a 0700 directory.
    acme_dir = platform.home / "acme"
    assert acme_dir.stat().st_mode & 0o777 == 0o700
    assert (acme_dir / "account-key.pem").stat().st_mode & 0o777 == 0o600
    # Certificate keys are in the database: it is root's only too, with its WAL files.
    for name in ("paas.db", "paas.db-wal", "paas.db-shm"):
        assert (platform.home / name).stat().st_mode & 0o777 == 0o600, name
    assert "PRIVATE KEY" not in platform.output()


def test_renewal_replaces_the_certificate_with_no_failed_request(
        acme: tuple[Platform, ClockRuns], pebble: Pebble) -> None:
    platform, _ = acme
    first = serial(platform, pebble, "www.shop.test")
    failures: list[str] = []
    served: set[int] = set()
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            try:
                code, _, number = https(platform, pebble, "www.shop.test")
                served.add(number)
                if code != 200:
                    failures.append(f"status {code}")
            except (OSError, ssl.SSLError) as exc:
                failures.append(repr(exc))
            time.sleep(0.02)

    threads = [threading.Thread(target=load) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        eventually(lambda: serial(platform, pebble, "www.shop.test"), lambda s: s != first,
                   timeout=120, what="a renewed certificate")
        time.sleep(1)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert failures == []
    assert first in served and len(served) >= 2


def test_challenges_are_answered_in_maintenance_and_with_no_dynos(
        acme: tuple[Platform, ClockRuns], pebble: Pebble) -> None:
    platform, _ = acme
    platform.paas("maintenance:on", "-a", "shop")
    platform.paas("ps:scale", "web=0", "-a", "shop")
    try:
        eventually(lambda: http(platform, "www.shop.test").status_code, lambda c: c == 503)
        before = serial(platform, pebble, "www.shop.test")
        eventually(lambda: serial(platform, pebble, "www.shop.test"), lambda s: s != before,
                   timeout=120, what="a renewal while in maintenance with no dynos")
        assert https(platform, pebble, "www.shop.test")[0] == 503  # H80 over HTTPS too
    finally:
        platform.paas("maintenance:off", "-a", "shop")
        platform.paas("ps:scale", "web=1", "-a", "shop")


def test_https_redirect_and_hsts_never_for_challenges(
        acme: tuple[Platform, ClockRuns], pebble: Pebble) -> None:
    platform, _ = acme
    assert http(platform, "www.shop.test").status_code in (200, 503)
    platform.paas("https:redirect", "on", "--hsts", "300", "-a", "shop")
    moved = eventually(lambda: http(platform, "www.shop.test", "/a/b?c=1"),
                       lambda r: r.status_code == 308)
    assert moved.headers["location"] == f"https://www.shop.test:{tls_port(platform)}/a/b?c=1"
    answer = eventually(lambda: https(platform, pebble, "www.shop.test"),
                        lambda a: a[0] == 200, what="the app over HTTPS")
    assert "Strict-Transport-Security: max-age=300" in answer[1]
    assert "Strict-Transport-Security" not in http(platform, "www.shop.test").text
    # Pebble follows no redirect to another port: a renewal proves the challenge was not.
    before = serial(platform, pebble, "www.shop.test")
    eventually(lambda: serial(platform, pebble, "www.shop.test"), lambda s: s != before,
               timeout=120, what="a renewal with the redirect on")
    platform.paas("https:redirect", "off", "-a", "shop")
    eventually(lambda: http(platform, "www.shop.test").status_code, lambda c: c == 200)


def test_a_challenge_the_ca_cannot_reach_fails_with_its_reason_and_is_retried(
        acme: tuple[Platform, ClockRuns], pebble: Pebble) -> None:
    platform, _ = acme
    pebble.set_servfail("lost.shop.test", True)
    try:
        platform.paas("domains:add", "lost.shop.test", "-a", "shop")
        failing = wait_state(platform, "shop", "lost.shop.test", "failing")
        assert "could not resolve" in failing["message"], failing
        assert failing["next_try_at"] > time.time() - 1
        again = eventually(lambda: status(platform, "shop", "lost.shop.test"),
                           lambda e: e["failures"] >= 3, timeout=90, what="two retries")
        assert again["state"] == "failing"
        listing = platform.paas("certs:auto", "-a", "shop").stdout
        assert "failing" in listing and "next try" in listing and "could not resolve" in listing
        # HTTP keeps serving the domain, and the other domains keep their HTTPS.
        assert http(platform, "lost.shop.test").status_code == 200
        assert https(platform, pebble, "www.shop.test")[0] == 200
    finally:
        pebble.set_servfail("lost.shop.test", False)
    wait_state(platform, "shop", "lost.shop.test", "issued", timeout=120)


def test_uploaded_certificates_win_and_wildcards_need_dns01(
        acme: tuple[Platform, ClockRuns], pebble: Pebble, tmp_path: Path) -> None:
    platform, _ = acme
    platform.paas("domains:add", "*.wild.shop.test", "-a", "shop")
    wild = status(platform, "shop", "*.wild.shop.test")
    assert wild["state"] == "unsupported" and "dns-01" in wild["message"]
    cert_pem, key_pem = make_cert("lost.shop.test", days=90)
    (tmp_path / "c.pem").write_text(cert_pem)
    (tmp_path / "k.pem").write_text(key_pem)
    platform.paas("certs:add", str(tmp_path / "c.pem"), str(tmp_path / "k.pem"), "-a", "shop")
    wait_state(platform, "shop", "lost.shop.test", "uploaded")
    context = ssl.create_default_context(cadata=cert_pem)
    eventually(lambda: _served_by(platform, context, "lost.shop.test"), lambda ok: ok,
               what="the uploaded certificate served")


def _served_by(platform: Platform, context: ssl.SSLContext, host: str) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", tls_port(platform)), timeout=10) as raw, \
                context.wrap_socket(raw, server_hostname=host):
            return True
    except (OSError, ssl.SSLError):
        return False


def test_a_lost_account_key_makes_a_new_account(
        acme: tuple[Platform, ClockRuns], pebble: Pebble) -> None:
    platform, _ = acme
    key = platform.home / "acme" / "account-key.pem"
    old = key.read_bytes()
    key.unlink()
    before = serial(platform, pebble, "www.shop.test")
    eventually(lambda: serial(platform, pebble, "www.shop.test"), lambda s: s != before,
               timeout=120, what="a renewal with a new account")
    assert key.read_bytes() != old
    assert status(platform, "shop", "www.shop.test")["state"] == "issued"


def test_removing_the_domain_removes_its_certificate(
        acme: tuple[Platform, ClockRuns], pebble: Pebble) -> None:
    platform, _ = acme
    platform.paas("domains:remove", "www.shop.test", "-a", "shop")
    eventually(lambda: _handshake_refused(platform, pebble, "www.shop.test"), lambda r: r,
               what="no certificate for the removed domain")
    assert status(platform, "shop", "www.shop.test")["state"] == "absent"
    assert https(platform, pebble, f"shop.{DOMAIN}")[0] == 200  # the app's others stay
    platform.paas("certs:auto:disable", "-a", "shop")
    eventually(lambda: _handshake_refused(platform, pebble, f"shop.{DOMAIN}"), lambda r: r,
               what="no automatic certificate once disabled")
    assert status(platform, "shop", f"shop.{DOMAIN}")["state"] == "off"


def _handshake_refused(platform: Platform, pebble: Pebble, host: str) -> bool:
    try:
        https(platform, pebble, host)
    except ssl.SSLError:
        return True
    return False


def test_the_dashboard_shows_each_domains_certificate(
        acme: tuple[Platform, ClockRuns], pebble: Pebble) -> None:
    from playwright.sync_api import expect, sync_playwright

    from tests.e2e.test_dashboard import CHROMIUM, CHROMIUM_ARGS, check_page, new_page, sign_in
    platform, _ = acme
    with platform.api() as api:
        made = api.post("/v1/users", json={"email": "certs@example.com",
                                           "password": "correct horse battery"})
        assert made.status_code == 201, made.text
    platform.paas("access:add", "certs@example.com", "-a", "shop")
    platform.paas("certs:auto:enable", "-a", "shop")
    wait_state(platform, "shop", f"shop.{DOMAIN}", "issued")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=CHROMIUM_ARGS)
        try:
            page = new_page(browser)
            sign_in(page, platform, "certs@example.com")
            page.goto(f"{platform.api_url}/dashboard/apps/shop")
            issued = page.locator(".cert-issued").first
            expect(issued).to_contain_text("HTTPS: certificate issued, expires")
            expect(page.locator(".cert-failing")).to_have_count(0)
            expect(page.locator(".cert-unsupported")).to_contain_text("dns-01")
            check_page(page, "acme-overview")
        finally:
            browser.close()
