"""A JSON body over the API's 1 MiB limit is refused with 413 as soon as it is over, declared
(Content-Length) or not (chunked): the API never holds more of it than the limit."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.platform import Platform
from tests.services import Growth

pytestmark = pytest.mark.e2e

BODY_MB = 50
# Far below the body: the API before read it whole (and then copied it) before refusing it.
GROWTH_BOUND_MB = 20


def pieces() -> Iterator[bytes]:
    piece = b"[" + b"0," * (512 * 1024)
    for _ in range(BODY_MB):
        yield piece


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_50_mb_body_is_refused_with_413_and_bounded_memory(
        platform: Platform, chunked: bool) -> None:
    body = pieces() if chunked else b"".join(pieces())
    with platform.api() as api, Growth(platform, ("api",)) as growth:
        try:
            answer = api.post("/v1/apps", content=body,
                              headers={"Content-Type": "application/json"})
        except httpx.TransportError:  # the API may close the connection before all is sent
            pytest.fail("the API closed the connection without an answer")
    assert answer.status_code == 413, answer.text
    assert answer.json() == {"id": "too_large", "message": "the request body is over 1 MiB"}
    grown = growth.grown_mb()["api"]
    assert grown < GROWTH_BOUND_MB, f"the API grew by {grown:.0f} MB"
    with platform.api() as api:  # and it keeps answering a body of a normal size
        created = api.post("/v1/apps", json={"name": f"small-{int(chunked)}"})
    assert created.status_code in (200, 201), created.text
