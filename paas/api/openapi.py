"""/v1/openapi.json: generated from the routes the app really serves, so it cannot drift.

Each route's summary comes from SUMMARIES; a route missing there is documented as
"undocumented" (and a test fails on it), never left out."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

UNDOCUMENTED = "undocumented"
PARAM = re.compile(r"{([^}:]+)(?::[^}]*)?}")

SUMMARIES: dict[tuple[str, str], str] = {
    ("GET", "/healthz"): "Is the API up",
    ("GET", "/v1/openapi.json"): "This document",
    ("POST", "/v1/login"): "Trade an email and password for a new API token",
    ("GET", "/v1/account"): "Who the token belongs to",
    ("GET", "/v1/tokens"): "Your API tokens (never their values)",
    ("POST", "/v1/tokens"): "Create an API token; its value is shown only in this response",
    ("DELETE", "/v1/tokens/{id}"): "Revoke one of your API tokens",
    ("GET", "/v1/users"): "List users (admin)",
    ("POST", "/v1/users"): "Create a user with an email and password (admin)",
    ("GET", "/v1/apps"): "List the apps you own or collaborate on",
    ("POST", "/v1/apps"): "Create an app",
    ("GET", "/v1/apps/{app}"): "An app's URLs, release, formation and dynos",
    ("DELETE", "/v1/apps/{app}"): "Destroy an app (owner; ?confirm=APP)",
    ("GET", "/v1/apps/{app}/builds"): "An app's builds, newest first",
    ("GET", "/v1/apps/{app}/releases"): "An app's releases, newest first",
    ("POST", "/v1/apps/{app}/releases"): 'Roll back: {"rollback": N} makes a new release '
                                         "with vN's slug and config",
    ("GET", "/v1/apps/{app}/releases/{version}"): "One release",
    ("GET", "/v1/apps/{app}/config"): "An app's config vars",
    ("PATCH", "/v1/apps/{app}/config"): 'Set ({"K": "v"}) and unset ({"K": null}) config '
                                        "vars; a new release unless ?restart=false",
    ("GET", "/v1/apps/{app}/collaborators"): "The app's owner and collaborators",
    ("POST", "/v1/apps/{app}/collaborators"): 'Add a collaborator: {"email": ...} (owner)',
    ("DELETE", "/v1/apps/{app}/collaborators/{email}"): "Remove a collaborator (owner, or "
                                                        "the collaborator themselves)",
    ("GET", "/v1/apps/{app}/formation"): "Process types and their quantities",
    ("PATCH", "/v1/apps/{app}/formation"): 'Scale: {"web": 2}',
    ("GET", "/v1/apps/{app}/dynos"): "The app's dynos",
    ("GET", "/v1/apps/{app}/logs"): "Recent log lines (?lines=N)",
    ("GET", "/v1/apps/{app}/domains"): "The app's hostnames: its own and custom domains",
    ("POST", "/v1/apps/{app}/domains"): 'Add a custom domain: {"hostname": "www.example.com"}'
                                        ' (or "*.example.com")',
    ("DELETE", "/v1/apps/{app}/domains/{hostname}"): "Remove a custom domain",
    ("GET", "/v1/apps/{app}/maintenance"): "Is maintenance mode on",
    ("PUT", "/v1/apps/{app}/maintenance"): 'Maintenance mode: {"maintenance": true} (H80)',
    ("GET", "/v1/apps/{app}/metrics"): "Router figures: requests, status classes, p50/p95 "
                                       "service time (?minutes=60); memory and CPU per "
                                       "process type a minute for the last hour (usage)",
    ("GET", "/v1/apps/{app}/certs"): "The app's TLS certificates and their expiry",
    ("POST", "/v1/apps/{app}/certs"): 'Add a TLS certificate: {"certificate": PEM, "key": PEM}',
    ("DELETE", "/v1/apps/{app}/certs/{name}"): "Remove a TLS certificate",
    ("GET", "/v1/apps/{app}/acm"): "Automatic certificates from the ACME CA: each hostname's "
                                   "state (pending, issued, failing, ...), expiry, next try",
    ("POST", "/v1/apps/{app}/acm"): "Turn automatic certificates on for the app",
    ("DELETE", "/v1/apps/{app}/acm"): "Turn automatic certificates off (their certificates go)",
    ("GET", "/v1/apps/{app}/https-redirect"): "Is HTTP redirected to HTTPS, and the HSTS max-age",
    ("PUT", "/v1/apps/{app}/https-redirect"): 'HTTP → HTTPS (308) for hostnames with a '
                                              'certificate: {"https_redirect": true, '
                                              '"hsts_max_age": 0}',
    ("POST", "/v1/apps/{app}/dynos"): "Run a one-off dyno",
    ("POST", "/v1/apps/{app}/dynos/restart"): 'Restart dynos: {"target": null | TYPE | '
                                              "TYPE.N}",
    ("GET", "/v1/apps/{app}/dynos/{name}"): "One dyno",
    ("GET", "/v1/apps/{app}/dynos/{name}/attach"): "An attached one-off's output as NDJSON; "
                                                   "as a WebSocket, a terminal one-off's "
                                                   "terminal (paas/terminals.py)",
    ("POST", "/v1/apps/{app}/dynos/{name}/stop"): "Stop a dyno",
    ("POST", "/v1/apps/{app}/dynos/{name}/input"): "Send an attached one-off's stdin: "
                                                  '{"data": BASE64}, then {"eof": true}',
    ("GET", "/v1/apps/{app}/ps-settings"): "The app's dyno settings",
    ("PATCH", "/v1/apps/{app}/ps-settings"): "Change the app's dyno settings",
    ("GET", "/v1/apps/{app}/builds/{build}"): "One build",
    ("GET", "/v1/keys"): "Your SSH public keys (for git push over SSH)",
    ("POST", "/v1/keys"): "Add an SSH public key",
    ("DELETE", "/v1/keys/{key}"): "Remove an SSH public key",
    ("POST", "/v1/slugs/gc"): "Collect unused layers (admin)",
    ("GET", "/v1/nodes"): "The nodes that run dynos: state, memory, dynos, heartbeat (admin)",
    ("GET", "/v1/doctor"): "paas doctor's host checks, run on the API's host: findings with "
                           "area, check, ok, detail, fix, fatal (admin)",
    ("POST", "/v1/internal/slugs/gc"): "Ask for a run of the layer-gc platform job after a "
                                       "build (services)",
    ("GET", "/v1/internal/builds/{id}"): "A build to run (services)",
    ("GET", "/v1/internal/builds/{id}/source"): "A build's source as a tar (services)",
    ("POST", "/v1/internal/builds/{id}/start"): "Mark a build as building (services)",
    ("POST", "/v1/internal/builds/{id}/result"): "Report a build's slug or failure (services)",
    ("PUT", "/v1/internal/nodes/{node}"): "Register a node, or its heartbeat: NodeInfo "
                                          "(services)",
    ("GET", "/v1/internal/nodes/{node}/desired"): "What one node should run: DesiredState; "
                                                  "404 for an unregistered node (services)",
    ("PUT", "/v1/internal/nodes/{node}/dynos"): "Report what one node runs: NodeReport "
                                                "(services)",
    ("GET", "/v1/internal/routes"): "The route table (services)",
    ("GET", "/v1/apps/{app}/cron"): "The app's cron jobs (app.json's cron): id, schedule, "
                                    "zone, command, next run, last run",
    ("POST", "/v1/apps/{app}/cron/{job}/runs"): "Run one of the app's cron jobs now "
                                               "(a one-off dyno cron.N)",
    ("GET", "/v1/admin/jobs"): "The platform's own periodic jobs: last and next run (admin)",
    ("POST", "/v1/admin/jobs/{name}/runs"): "Run one of the platform's jobs now (admin)",
    ("GET", "/git/{app}.git/info/refs"): "git smart HTTP: ref advertisement",
    ("POST", "/git/{app}.git/git-receive-pack"): "git smart HTTP: push (builds and deploys)",
    ("POST", "/git/{app}.git/git-upload-pack"): "git smart HTTP: fetch and clone",
    # add-ons (issue 18): Postgres and Redis servers
    ("GET", "/v1/addons/plans"): "Every add-on service's plans: memory, disk, connections",
    ("GET", "/v1/apps/{app}/addons"): "The add-ons attached to an app, with their state",
    ("POST", "/v1/apps/{app}/addons"): "Create an add-on (postgres, redis:basic) and attach it",
    ("GET", "/v1/apps/{app}/addons/{addon}"): "One add-on: plan, limits, state, attachments",
    ("PATCH", "/v1/apps/{app}/addons/{addon}"): "Change an add-on's plan (data kept)",
    ("DELETE", "/v1/apps/{app}/addons/{addon}"): "Destroy an add-on: its server and data",
    ("POST", "/v1/apps/{app}/addon-attachments"): "Attach another app's add-on to this app",
    ("DELETE", "/v1/apps/{app}/addon-attachments/{addon}"): "Detach an add-on: access revoked",
    ("POST", "/v1/apps/{app}/addons/{addon}/credentials/rotate"):
        "A new password for the add-on's app user; config vars updated in new releases",
    ("GET", "/v1/apps/{app}/addons/{addon}/pg-info"):
        "A Postgres add-on's version, size, connections and plan limits",
}

ERROR = {"$ref": "#/components/schemas/Error"}


def documented(route: BaseRoute) -> bool:
    """The routes this document covers: the versioned API, git over HTTP and /healthz."""
    path = getattr(route, "path", "")
    return isinstance(route, Route) and (path.startswith(("/v1/", "/git/")) or path == "/healthz")


def template(path: str) -> str:
    """The OpenAPI form of a Starlette path: `{key:path}` becomes `{key}`."""
    return PARAM.sub(r"{\1}", path)


def operations(routes: Iterable[BaseRoute]) -> list[tuple[str, str, Route]]:
    found = []
    for route in routes:
        if documented(route):
            assert isinstance(route, Route)
            found += [(m, template(route.path), route) for m in sorted(route.methods or ())
                      if m != "HEAD"]
    return found


def _security(path: str, route: Route) -> list[dict[str, list[str]]]:
    if path.startswith("/git/"):
        return [{"basic": []}]
    return [] if getattr(route.endpoint, "auth", "none") == "none" else [{"bearer": []}]


def _tag(path: str) -> str:
    """The noun: `config` for /v1/apps/{app}/config, `internal`, `git`, `tokens`..."""
    words = [w for w in path.split("/")[1:] if w and w != "v1" and not w.startswith("{")]
    if words[0] in ("internal", "git") or len(words) == 1:
        return words[0]
    return words[1] if words[0] == "apps" else words[0]


def _operation(method: str, path: str, route: Route) -> dict[str, Any]:
    status = str(getattr(route.endpoint, "status", 200))
    return {
        "summary": SUMMARIES.get((method, path), UNDOCUMENTED),
        "operationId": f"{method.lower()}{re.sub(r'[^A-Za-z0-9]+', '_', path)}".rstrip("_"),
        "tags": [_tag(path)],
        "parameters": [{"name": name, "in": "path", "required": True,
                        "schema": {"type": "string"}} for name in PARAM.findall(path)],
        "security": _security(path, route),
        "responses": {status: {"description": "success"},
                      "default": {"description": "an error", "content": {
                          "application/json": {"schema": ERROR}}}},
    }


def document(routes: Iterable[BaseRoute]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for method, path, route in operations(routes):
        paths.setdefault(path, {})[method.lower()] = _operation(method, path, route)
    return {
        "openapi": "3.1.0",
        "info": {"title": "paas API", "version": "1",
                 "description": "Every `paas` command is one or a few calls to this API. "
                                "Authenticate with `Authorization: Bearer TOKEN`; errors are "
                                '{"id", "message"} with an HTTP status.'},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"},
                                "basic": {"type": "http", "scheme": "basic",
                                          "description": "any user name; the password is an "
                                                         "API token"}},
            "schemas": {"Error": {"type": "object", "required": ["id", "message"],
                                  "properties": {"id": {"type": "string"},
                                                 "message": {"type": "string"}}}},
        },
    }


async def openapi(request: Request) -> JSONResponse:
    return JSONResponse(document(request.app.routes))


def routes() -> list[Route]:
    return [Route("/v1/openapi.json", openapi, methods=["GET"])]
