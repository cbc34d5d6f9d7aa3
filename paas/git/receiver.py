"""Git smart HTTP: push to deploy, clone what is deployed.

    GET  /git/{app}.git/info/refs?service=git-receive-pack|git-upload-pack
    POST /git/{app}.git/git-receive-pack
    POST /git/{app}.git/git-upload-pack

A push is read as it arrives (`paas.git.session`: its objects are checked in a quarantine and
added to the app's repository without moving any ref), then each accepted command is handed to
`GitBackend.deploy`, whose progress lines stream back to the client as `remote:` lines while
the build runs. The backend moves the ref.
"""

from __future__ import annotations

import base64
import binascii
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

from dulwich.errors import GitProtocolError, HangupException
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from paas.errors import Forbidden, Invalid, NotFound, PaasError, Unauthorized
from paas.git import protocol, session
from paas.git.protocol import ByteStream
from paas.git.types import GitBackend, PushRejected, RefUpdate
from paas.sourcetree import SourceLimits

__all__ = ["GitBackend", "PushRejected", "RefUpdate", "git_routes"]

SERVICES = ("git-upload-pack", "git-receive-pack")
MAX_UPLOAD_REQUEST = 16 << 20  # a fetch's want/have negotiation, not a pack
NO_CACHE = {
    "Expires": "Fri, 01 Jan 1980 00:00:00 GMT",
    "Pragma": "no-cache",
    "Cache-Control": "no-cache, max-age=0, must-revalidate",
}


def git_routes(backend: GitBackend, max_push_bytes: int,
               source_limits: SourceLimits | None = None) -> list[BaseRoute]:
    git = _GitHttp(backend, max_push_bytes, source_limits)
    return [
        Route("/git/{app}.git/info/refs", _handle_errors(git.info_refs), methods=["GET"]),
        Route(
            "/git/{app}.git/git-receive-pack",
            _handle_errors(git.receive_pack),
            methods=["POST"],
        ),
        Route(
            "/git/{app}.git/git-upload-pack",
            _handle_errors(git.upload_pack),
            methods=["POST"],
        ),
    ]


Endpoint = Callable[[Request], Awaitable[Response]]


def _handle_errors(endpoint: Endpoint) -> Endpoint:
    async def wrapped(request: Request) -> Response:
        try:
            return await endpoint(request)
        except Unauthorized as e:
            headers = {"WWW-Authenticate": 'Basic realm="paas"'}
            return PlainTextResponse(e.message + "\n", e.status, headers=headers)
        except PaasError as e:
            return PlainTextResponse(e.message + "\n", e.status)
        except ClientDisconnect:
            return Response(status_code=400)

    return wrapped


class _GitHttp:
    def __init__(self, backend: GitBackend, max_push_bytes: int,
                 source_limits: SourceLimits | None) -> None:
        self.backend = backend
        self.max_push_bytes = max_push_bytes
        self.source_limits = source_limits

    async def info_refs(self, request: Request) -> Response:
        service = request.query_params.get("service", "")
        if service not in SERVICES:
            raise Forbidden("only the smart HTTP protocol is served; upgrade git")
        path = await self._authorized_repo(request, write=service == "git-receive-pack")
        if service == "git-receive-pack":
            refs = await run_in_threadpool(protocol.receive_pack_advertisement, path)
        else:
            refs = await run_in_threadpool(protocol.upload_pack, path, None)
        return Response(
            protocol.service_header(service) + refs,
            media_type=f"application/x-{service}-advertisement",
            headers=NO_CACHE,
        )

    async def upload_pack(self, request: Request) -> Response:
        _require_content_type(request, "git-upload-pack")
        path = await self._authorized_repo(request, write=False)
        body = await _read_small_body(request, MAX_UPLOAD_REQUEST)
        try:
            result = await run_in_threadpool(protocol.upload_pack, path, body)
        except (GitProtocolError, HangupException) as e:
            raise Invalid(f"bad upload-pack request: {e}") from e
        return Response(result, media_type="application/x-git-upload-pack-result", headers=NO_CACHE)

    async def receive_pack(self, request: Request) -> Response:
        _require_content_type(request, "git-receive-pack")
        app = request.path_params["app"]
        path = await self._authorized_repo(request, write=True)
        stream = ByteStream(_decoded(request))
        try:
            push = await session.receive(path, stream, self.max_push_bytes,
                                         self.source_limits)
        except GitProtocolError as e:
            raise Invalid(f"bad receive-pack request: {e}") from e
        # the whole body, so that a client still sending hears the answer, not a reset
        await stream.drain(4 * self.max_push_bytes + (64 << 20))
        # started here, not in the response body: it must run even if the response never does
        pusher = request.state.pusher
        events = (session.start_deploys(self.backend, app, path, push, pusher)
                  if push.commands else None)
        return StreamingResponse(
            session.result(push, events),
            media_type="application/x-git-receive-pack-result",
            headers=NO_CACHE,
        )

    async def _authorized_repo(self, request: Request, write: bool) -> Path:
        app = request.path_params["app"]
        if not protocol.valid_app_name(app):
            raise NotFound(f"no such app: {app[:40]}")
        password = _basic_password(request.headers.get("authorization"))

        def check() -> Path:
            request.state.pusher = self.backend.authorize(app, password, write) or ""
            return self.backend.repo_path(app)

        return await run_in_threadpool(check)


def _require_content_type(request: Request, service: str) -> None:
    # The exact type also makes browsers preflight, so a page cannot push with stored credentials.
    if request.headers.get("content-type") != f"application/x-{service}-request":
        raise Forbidden("invalid Content-Type")


def _basic_password(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    _, sep, password = decoded.partition(":")
    return password if sep else None


async def _decoded(request: Request) -> AsyncIterator[bytes]:
    inflate = _decoder(request.headers.get("content-encoding", ""))
    async for chunk in request.stream():
        for data in inflate(chunk):
            yield data


async def _read_small_body(request: Request, limit: int) -> bytes:
    inflate = _decoder(request.headers.get("content-encoding", ""))
    parts: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        for data in inflate(chunk):
            size += len(data)
            if size > limit:
                raise Invalid(f"request larger than {limit} bytes")
            parts.append(data)
    return b"".join(parts)


def _decoder(encoding: str) -> Callable[[bytes], Iterator[bytes]]:
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return lambda chunk: iter((chunk,) if chunk else ())
    if encoding in ("gzip", "x-gzip"):
        return _Inflater().feed
    raise Invalid(f"unsupported Content-Encoding: {encoding}")


class _Inflater:
    """Gunzips in bounded steps so that a small compressed chunk cannot balloon in memory."""

    step = 1 << 16

    def __init__(self) -> None:
        self.inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)

    def feed(self, chunk: bytes) -> Iterator[bytes]:
        data = chunk
        try:
            while not self.inflater.eof:
                out = self.inflater.decompress(data, self.step)
                if out:
                    yield out
                data = self.inflater.unconsumed_tail
                # a full step may leave output pending inside zlib even with no input left
                if not data and len(out) < self.step:
                    break
        except zlib.error as e:
            raise Invalid(f"bad gzip body: {e}") from e
