"""Auth on every route: the routes are enumerated from the API's own Starlette app, so a new
route is checked the day it is added. Each one, without a token, with a forged token, with
another user's token (or dashboard session), with a forged or expired session cookie: refused.
Only the explicit PUBLIC list answers strangers."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import httpx
import pytest
from itsdangerous import URLSafeTimedSerializer
from sqlalchemy import text
from starlette.routing import BaseRoute, Mount, WebSocketRoute
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from paas.api.server import api_server
from paas.dashboard.sessions import COOKIE, SALT, DashboardSession
from paas.models import make_engine
from paas.settings import Settings
from tests.platform import Platform

pytestmark = pytest.mark.e2e

# (method, path pattern) that anyone may call, and why.
PUBLIC = {
    ("GET", "/healthz"),  # the load balancer's probe
    ("POST", "/v1/login"),  # how a token is obtained
    ("GET", "/v1/openapi.json"),  # the API's description, no data
    ("GET", "/"),  # redirects to the dashboard
    ("GET", "/dashboard"),  # redirects to the dashboard
    ("GET", "/dashboard/login"),  # the sign-in page
    ("POST", "/dashboard/login"),  # the sign-in form
    ("GET", "/dashboard/static/*"),  # CSS and JS
}
# Routes about the caller's own account: another user's token gets its own data, so the check
# is that none of the victim's data appears (GETs), and the writes are not sent at all.
SELF_SERVICE = {
    ("GET", "/v1/apps"), ("GET", "/v1/account"), ("GET", "/v1/tokens"), ("GET", "/v1/keys"),
    ("POST", "/v1/apps"), ("POST", "/v1/tokens"), ("POST", "/v1/keys"),
    ("GET", "/v1/addons/plans"),  # the platform's plans, the same for every user
}
REFUSED = {401, 403, 404}


def flatten(routes: list[BaseRoute], prefix: str = "") -> Iterator[tuple[str, str]]:
    for route in routes:
        if isinstance(route, Mount):
            if route.routes:
                yield from flatten(route.routes, prefix + route.path)
            else:
                yield "GET", prefix + route.path + "/*"
        elif isinstance(route, WebSocketRoute):
            yield "WS", prefix + route.path
        else:
            for method in sorted(getattr(route, "methods", None) or {"GET"}):
                if method != "HEAD":
                    yield method, prefix + route.path


def all_routes(tmp_path: Path) -> list[tuple[str, str]]:
    app = api_server(Settings(home=tmp_path / "enumerate"))
    return sorted(set(flatten(app.routes)))


def concrete(pattern: str, values: dict[str, str]) -> str:
    path = pattern.replace("/*", "/app.js").replace("{key:path}", values["key"])
    path = path.replace("{path:path}", "anything")
    for name, value in values.items():
        path = path.replace("{" + name + "}", value)
    assert "{" not in path, f"no test value for a parameter of {pattern}: add one"
    return path


def send(client: httpx.Client, method: str, path: str, **kwargs: object) -> httpx.Response:
    client.cookies.clear()
    if path.startswith("/git/") and path.endswith("/info/refs"):
        path += "?service=git-upload-pack"
    body = {} if method in ("POST", "PATCH", "PUT") and not path.startswith("/dashboard") else None
    return client.request(method, path, json=body, **kwargs)  # type: ignore[arg-type]


def websocket_refused(url: str, headers: dict[str, str]) -> bool:
    """Refused in the handshake, or accepted only to say the error and close 4000 + status."""
    try:
        with connect(url, additional_headers=headers, open_timeout=10) as ws:
            first = json.loads(ws.recv(timeout=10))
            try:
                ws.recv(timeout=10)
            except ConnectionClosed as closed:
                return set(first) == {"error"} and (closed.rcvd.code - 4000) in REFUSED
            return False
    except InvalidStatus as refused:
        return refused.response.status_code in REFUSED


def cookie(key: str, session: DashboardSession, age: float = 0) -> str:
    serializer = URLSafeTimedSerializer(key, salt=SALT)
    with mock.patch("time.time", return_value=time.time() - age):
        return serializer.dumps(session.to_dict())


def user_id(platform: Platform, email: str) -> int:
    """The cookie names a user row; the API never shows row ids, so read the database."""
    engine = make_engine(platform.database_url)  # SQLite or PostgreSQL (make test-postgres)
    try:
        with engine.connect() as db:
            return db.execute(text("SELECT id FROM users WHERE email = :email"),
                              {"email": email}).scalar_one()
    finally:
        engine.dispose()


def new_user(admin: httpx.Client, api_url: str) -> tuple[str, str, dict]:
    email, password = f"mallory-{uuid.uuid4().hex[:8]}@example.com", uuid.uuid4().hex
    assert admin.post("/v1/users", json={"email": email, "password": password}).status_code == 201
    login = httpx.post(f"{api_url}/v1/login", json={"email": email, "password": password})
    token = login.json()["token"]
    account = httpx.get(f"{api_url}/v1/account", headers={"Authorization": f"Bearer {token}"})
    return email, token, account.json()


def test_every_route_refuses_strangers_and_other_users(platform: Platform,
                                                       tmp_path: Path) -> None:
    routes = all_routes(tmp_path)
    assert len(routes) > 60 and ("WS", "/v1/apps/{app}/dynos/{name}/attach") in routes
    assert set(routes) >= PUBLIC, PUBLIC - set(routes)  # the allow-list names real routes
    victim = f"victim-{uuid.uuid4().hex[:6]}"
    with platform.api() as admin:
        assert admin.post("/v1/apps", json={"name": victim}).status_code == 201
        assert admin.patch(f"/v1/apps/{victim}/config",
                           json={"SECRET": "s3cr3t-value"}).status_code == 200
        me = admin.get("/v1/account").json()
        _, mallory_token, mallory = new_user(admin, platform.api_url)
    values = {"app": victim, "version": "1", "build": "1", "name": "web.1",
              "hostname": "www.example.com", "email": me["email"], "id": str(me["token_id"]),
              "key": "SHA256:AAAA", "node": "node-x", "addon": "victim-postgres",
              "job": "deadbeef"}
    key = (platform.home / "dashboard-secret").read_text().strip()
    admin_session = DashboardSession(token_id=me["token_id"],
                                     user_id=user_id(platform, me["email"]), email=me["email"])
    mallory_session = DashboardSession(token_id=mallory["token_id"],
                                       user_id=user_id(platform, mallory["email"]),
                                       email=mallory["email"])
    cookies = {
        "forged": cookie("not-the-key", admin_session),
        "expired": cookie(key, admin_session, age=float(platform.env.get(
            "PAAS_SESSION_MAX_AGE", 43200)) + 60),
    }
    bearer = {"none": {}, "forged": {"Authorization": "Bearer paas_forged0000000000"},
              "mallory": {"Authorization": f"Bearer {mallory_token}"}}
    failures = []
    with httpx.Client(base_url=platform.api_url, timeout=30) as client:
        # the positive controls: the right cookie and token work
        client.cookies.set(COOKIE, cookie(key, admin_session))
        assert client.get("/dashboard/").status_code == 200
        client.cookies.clear()
        assert client.get(f"/v1/apps/{victim}", headers={
            "Authorization": f"Bearer {platform.token}"}).status_code == 200
        for method, pattern in routes:
            if (method, pattern) in PUBLIC:
                continue
            path = concrete(pattern, values)
            if method == "WS":
                url = platform.api_url.replace("http", "ws") + path
                for who, headers in bearer.items():
                    if not websocket_refused(url, headers):
                        failures.append(f"WS {path} as {who}: accepted")
                continue
            if pattern.startswith("/dashboard") or pattern == "/":
                failures += dashboard_checks(client, method, path, cookies, key, mallory_session)
                continue
            for who, headers in bearer.items():
                if who == "mallory" and (method, pattern) in SELF_SERVICE:
                    if method == "GET":
                        text = send(client, method, path, headers=headers).text
                        if victim in text or "s3cr3t" in text or me["email"] in text:
                            failures.append(f"{method} {path} as mallory shows the victim's data")
                    continue
                auth = {}
                if pattern.startswith("/git/"):
                    token = headers.get("Authorization", "Bearer ").split(" ", 1)[1]
                    auth = {"auth": ("paas", token)} if token else {}
                    headers = {}
                response = send(client, method, path, headers=headers, **auth)
                if response.status_code not in REFUSED:
                    failures.append(f"{method} {path} as {who}: {response.status_code}")
    assert failures == [], "\n".join(failures)
    with platform.api() as admin:  # nothing a refused call touched has changed
        assert admin.get(f"/v1/apps/{victim}/config").json() == {"SECRET": "s3cr3t-value"}
        assert admin.get(f"/v1/apps/{victim}").status_code == 200
        assert admin.delete(f"/v1/apps/{victim}?confirm={victim}").status_code == 200


def dashboard_checks(client: httpx.Client, method: str, path: str, cookies: dict[str, str],
                     key: str, mallory: DashboardSession) -> list[str]:
    failures = []
    form = {"csrf": mallory.csrf, "name": "x", "value": "y", "key": "x", "hostname": "x"}
    for who, value in [("none", None), *cookies.items()]:
        jar = {COOKIE: value} if value else {}
        client.cookies.clear()  # on the client: httpx deprecates per-request cookies
        client.cookies.update(jar)
        response = client.request(method, path, data=form if method == "POST" else None)
        location = response.headers.get("location", "")
        signin = response.status_code == 303 and location.startswith("/dashboard/login")
        if not signin and response.status_code not in REFUSED:  # event streams: 401
            failures.append(f"{method} {path} as {who}: {response.status_code} {location}")
    if "/apps/" not in path:
        return failures  # mallory's own pages are hers to see
    client.cookies.clear()
    client.cookies.set(COOKIE, cookie(key, mallory))
    response = client.request(method, path, data=form if method == "POST" else None)
    if method == "GET" and response.status_code not in REFUSED:
        failures.append(f"{method} {path} as mallory: {response.status_code}")
    if method == "POST":
        flash = DashboardSession.from_dict(URLSafeTimedSerializer(key, salt=SALT).loads(
            response.cookies[COOKIE])).flash
        if response.status_code != 303 or not any(kind == "error" for kind, _ in flash):
            failures.append(f"{method} {path} as mallory: {response.status_code} {flash}")
    return failures
