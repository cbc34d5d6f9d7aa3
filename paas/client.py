"""A small HTTP client of the API, used by the CLI and by the platform's own services."""

from __future__ import annotations

import functools
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from paas.errors import PaasError, Unavailable

ERRORS = {cls.status: cls for cls in PaasError.__subclasses__()}


@functools.cache
def ssl_context() -> ssl.SSLContext:
    """One TLS context (httpx's default: certifi's CAs) for every client of the process: each
    `httpx.Client` otherwise loads the CA bundle again, ~0.8 MiB apiece, though the
    platform's own calls are plain HTTP on loopback."""
    return httpx.create_ssl_context()


class ApiClient:
    def __init__(self, base_url: str, token: str | None, timeout: float = 30) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.base_url = base_url.rstrip("/")
        self.http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout,
                                 verify=ssl_context())

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as error:
            raise Unavailable(f"cannot reach the paas API at {self.base_url} ({error}); "
                              "is the platform running (`paas up`)?") from None
        if response.status_code >= 400:
            raise _error(response)
        return response.json() if response.content else None

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> Any:
        return self.request("POST", path, json=body, **kwargs)

    def put(self, path: str, body: Any = None) -> Any:
        return self.request("PUT", path, json=body)

    def patch(self, path: str, body: Any = None, **kwargs: Any) -> Any:
        return self.request("PATCH", path, json=body, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Any:
        return self.request("DELETE", path, **kwargs)

    @contextmanager
    def stream(self, path: str) -> Iterator[httpx.Response]:
        with self.http.stream("GET", path) as response:
            if response.status_code >= 400:
                response.read()
                raise _error(response)
            yield response

    def close(self) -> None:
        self.http.close()


def _error(response: httpx.Response) -> PaasError:
    try:
        message = response.json().get("message", response.text)
    except ValueError:
        message = response.text or response.reason_phrase
    return ERRORS.get(response.status_code, PaasError)(message)
