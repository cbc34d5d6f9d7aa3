"""The orderer (the acme-orders platform job) against CAs that fail: one that is down, one that
answers garbage, and Pebble after the account it knew is gone. Real SQLite, a real
redis-server, a real CA or a real HTTP server in its place; no router (the e2e tests have it):
a challenge stays published, never answered, until a router acknowledges it."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from sqlalchemy import select

from paas import acme_orders, autocerts, domains, notify
from paas.api.context import Context
from paas.models import App, AutoCert
from paas.settings import Settings
from tests.pebble import Pebble
from tests.platform import free_port
from tests.redis_server import redis_server


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    with redis_server(tmp_path) as (_, found):
        yield found


def context(tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch,
            directory: str, bundle: str = "") -> Context:
    monkeypatch.setenv("PAAS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PAAS_REDIS_URL", redis_url)
    monkeypatch.setenv("PAAS_ACME_DIRECTORY", directory)
    monkeypatch.setenv("PAAS_ACME_CA_BUNDLE", bundle)
    monkeypatch.setenv("PAAS_ACME_RETRY", "60")
    settings = Settings()
    settings.home.mkdir(parents=True)
    ctx = Context.create(settings)
    with ctx.sessions() as db:
        shop = App(name="shop", slot=1)
        db.add(shop)
        db.flush()
        domains.add(db, shop, "www.shop.test", settings.domain)
        db.commit()
    return ctx


def the_row(ctx: Context) -> AutoCert:
    with ctx.read() as db:
        row = db.scalar(select(AutoCert).where(AutoCert.hostname == "www.shop.test"))
        assert row is not None
        db.expunge(row)
        return row


def test_a_ca_that_is_down_fails_the_order_and_it_is_retried_after_its_backoff(
        tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = context(tmp_path, redis_url, monkeypatch, f"https://127.0.0.1:{free_port()}/dir")
    acme_orders.run(ctx)
    row = the_row(ctx)
    assert (row.step, row.failures) == (autocerts.Step.FAILED, 1)
    assert "cannot reach the CA" in row.reason
    assert 55 < row.next_try_at - time.time() <= 60
    acme_orders.run(ctx)  # not due yet: not tried again
    assert the_row(ctx).failures == 1
    with ctx.sessions() as db:
        db.get(AutoCert, row.id).next_try_at = 0  # type: ignore[union-attr]
        db.commit()
    acme_orders.run(ctx)
    again = the_row(ctx)
    assert again.failures == 2 and 115 < again.next_try_at - time.time() <= 120
    with ctx.read() as db:  # what certs:auto shows
        shop = db.scalar(select(App))
        assert shop is not None
        shown = autocerts.status(db, shop, ctx.settings)["domains"]
    assert shown[1]["state"] == "failing" and "cannot reach the CA" in shown[1]["message"]
    # The account key was made once, 0600, in a 0700 directory.
    key = ctx.settings.acme_dir / "account-key.pem"
    assert key.stat().st_mode & 0o777 == 0o600
    assert ctx.settings.acme_dir.stat().st_mode & 0o777 == 0o700


class Garbage(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<html>this is not an ACME server</html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_a_ca_that_answers_garbage_fails_with_a_clear_reason(
        tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Garbage)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        ctx = context(tmp_path, redis_url, monkeypatch,
                      f"http://127.0.0.1:{server.server_address[1]}/dir")
        summary = acme_orders.run(ctx)
    finally:
        server.shutdown()
        server.server_close()
    row = the_row(ctx)
    assert row.step == autocerts.Step.FAILED, summary
    assert "not ACME" in row.reason
    with ctx.read() as db:
        assert autocerts.challenges(db) == ()


def test_an_account_the_ca_no_longer_knows_is_registered_again(
        tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch,
        pebble: Pebble) -> None:
    ctx = context(tmp_path, redis_url, monkeypatch, pebble.directory, str(pebble.listener_ca))
    acme_dir = ctx.settings.acme_dir
    acme_orders.run(ctx)
    row = the_row(ctx)
    # Published, never answered: no router acknowledged its generation.
    assert row.step == autocerts.Step.PUBLISHED and row.token
    assert row.generation == notify.routes_generation(ctx.redis)
    assert notify.routes_applied(ctx.redis) < row.generation
    with ctx.read() as db:
        (challenge,) = autocerts.challenges(db)
    assert challenge.hostname == "www.shop.test"
    first = json.loads((acme_dir / "account.json").read_text())["uri"]
    # The CA forgot the account (Pebble restarted; a CA's reset): its URL no longer works.
    (acme_dir / "account.json").write_text(json.dumps(
        {"directory": pebble.directory, "uri": first.rsplit("/", 1)[0] + "/gone"}))
    with ctx.sessions() as db:
        stored = db.get(AutoCert, row.id)
        assert stored is not None
        autocerts.fail(stored, "made to fail", 1, time.time() - 10)
        stored.next_try_at = 0
        db.commit()
    acme_orders.run(ctx)
    again = the_row(ctx)
    assert again.step == autocerts.Step.PUBLISHED, again.reason
    # The same key: the CA's answer to registering again names the account it has for it.
    assert json.loads((acme_dir / "account.json").read_text())["uri"] == first


def test_a_challenge_is_acknowledged_once_every_live_router_applied_it(redis_url: str) -> None:
    from paas import redis_clients

    client = redis_clients.client(redis_url, decode_responses=True)
    assert not notify.routers_applied(client, 1)  # no router: never
    notify.acknowledge(client, 5, router="node-a")
    notify.acknowledge(client, 3, router="node-b")
    assert notify.routers_applied(client, 3)
    assert not notify.routers_applied(client, 4)  # node-b has not applied it yet
    # A router not heard from for ROUTER_LIVE seconds is not waited for.
    later = time.time() + notify.ROUTER_LIVE + 1
    client.hset(notify.ROUTERS_APPLIED, "node-a", f"5 {later}")
    assert notify.routers_applied(client, 5, now=later)
    client.close()
