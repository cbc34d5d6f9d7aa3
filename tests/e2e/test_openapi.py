"""/v1/openapi.json describes exactly the routes the API serves, and each of them answers;
errors are JSON {id, message} everywhere."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from starlette.routing import Route

from paas.api.server import api_server
from paas.settings import Settings
from tests.platform import Platform

pytestmark = pytest.mark.e2e

SAMPLE_PARAMS = {"app": "oapi-target", "version": "1", "id": "0", "email": "nobody@example.com",
                 "hostname": "nobody.example.com", "name": "nobody"}


def served_routes(tmp_path: Path) -> set[tuple[str, str]]:
    """What the API app serves, read from its Starlette routes (not from the document)."""
    app = api_server(Settings(home=tmp_path / "home"))
    return {(method, re.sub(r"{(\w+):\w+}", r"{\1}", route.path))
            for route in app.routes if isinstance(route, Route)
            and (route.path.startswith(("/v1/", "/git/")) or route.path == "/healthz")
            for method in route.methods or () if method != "HEAD"}


def documented(document: dict) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, ops in document["paths"].items() for method in ops}


def test_the_document_lists_exactly_the_served_routes(platform: Platform,
                                                      tmp_path: Path) -> None:
    response = httpx.get(f"{platform.api_url}/v1/openapi.json", timeout=30)

    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.")
    assert documented(document) == served_routes(tmp_path)
    undocumented = [f"{m.upper()} {p}" for p, ops in document["paths"].items()
                    for m, op in ops.items() if op["summary"] == "undocumented"]
    assert undocumented == [], "add a summary to paas/api/openapi.py SUMMARIES"
    for path, ops in document["paths"].items():
        names = {p["name"] for op in ops.values() for p in op["parameters"]}
        assert names == set(re.findall(r"{(\w+)}", path))


def test_every_documented_route_answers(platform: Platform) -> None:
    platform.paas("apps:create", "oapi-target")
    document = httpx.get(f"{platform.api_url}/v1/openapi.json", timeout=30).json()
    answers = {}
    try:
        with platform.api() as api:
            for method, path in sorted(documented(document)):
                url = re.sub(r"{(\w+)}", lambda m: SAMPLE_PARAMS.get(m.group(1), "none"), path)
                if path.startswith("/git/"):
                    response = api.request(method, url, params={"service": "git-upload-pack"},
                                           auth=("paas", platform.token))
                else:
                    response = api.request(method, url)
                answers[f"{method} {path}"] = response
                if (method, path) == ("POST", "/v1/tokens"):
                    api.delete(f"/v1/tokens/{response.json()['id']}").raise_for_status()
    finally:
        platform.paas("apps:destroy", "oapi-target", "--confirm", "oapi-target")

    unserved = {op: r.status_code for op, r in answers.items()
                if r.status_code == 405 or "no such endpoint" in r.text}
    assert unserved == {}
    not_json = [op for op, r in answers.items() if op.split()[1].startswith("/v1/")
                and "source" not in op and not _is_json(r)]
    assert not_json == []
    bad_errors = [op for op, r in answers.items() if op.split()[1].startswith("/v1/")
                  and r.status_code >= 400 and set(r.json()) != {"id", "message"}]
    assert bad_errors == []
    assert answers["GET /v1/apps/{app}"].status_code == 200
    assert answers["GET /git/{app}.git/info/refs"].status_code == 200


def _is_json(response: httpx.Response) -> bool:
    try:
        response.json()
    except ValueError:
        return False
    return True


def test_errors_are_json_with_an_id_and_a_message(platform: Platform) -> None:
    base = platform.api_url
    headers = {"Authorization": f"Bearer {platform.token}"}
    cases = {
        "no token": httpx.get(f"{base}/v1/apps", timeout=30),
        "bad token": httpx.get(f"{base}/v1/apps", headers={"Authorization": "Bearer nope"},
                               timeout=30),
        "no such app": httpx.get(f"{base}/v1/apps/no-such-app", headers=headers, timeout=30),
        "no such endpoint": httpx.get(f"{base}/v1/nothing-here", headers=headers, timeout=30),
        "wrong method": httpx.put(f"{base}/v1/apps", headers=headers, timeout=30),
        "bad json": httpx.post(f"{base}/v1/apps", headers=headers, content=b"{", timeout=30),
    }

    got = {case: (r.status_code, r.json()["id"]) for case, r in cases.items()}

    assert got == {
        "no token": (401, "unauthorized"), "bad token": (401, "unauthorized"),
        "no such app": (404, "not_found"), "no such endpoint": (404, "not_found"),
        "wrong method": (405, "method_not_allowed"), "bad json": (422, "invalid"),
    }
    assert all(r.json()["message"] for r in cases.values())
