"""A build whose task raised before it started is failed, not left pending (pure logic: the
API client is a recording stand-in)."""

from __future__ import annotations

from typing import Any

import pytest

from paas.builder.tasks import fail_if_unstarted
from paas.errors import Unavailable
from paas.wire import BuildInfo, BuildResult


class RecordingApi:
    def __init__(self, status: str | None) -> None:
        self.status = status
        self.posts: list[tuple[str, Any]] = []

    def get(self, path: str) -> dict[str, Any]:
        if self.status is None:
            raise Unavailable("the API is down")
        return BuildInfo(id="b1", app="demo", uid=20001, commit="c0ffee", status=self.status,
                         config={}).to_json()

    def post(self, path: str, body: Any = None) -> None:
        self.posts.append((path, body))


def test_a_pending_build_is_failed_with_the_reason_and_the_pusher_told() -> None:
    api, lines = RecordingApi("pending"), []
    fail_if_unstarted(api, lines.append, "b1", ConnectionError("redis went away"))  # type: ignore[arg-type]
    message = ("the build could not start (ConnectionError: redis went away); push again, "
               "and tell the operator if it keeps happening")
    assert api.posts == [("/v1/internal/builds/b1/result",
                          BuildResult(status="failed", error=message).to_json())]
    assert lines == [f" !     {message}"]


@pytest.mark.parametrize("status", ["building", "succeeded", "failed", None])
def test_a_build_someone_runs_or_that_ended_is_left_alone(status: str | None) -> None:
    api, lines = RecordingApi(status), []
    fail_if_unstarted(api, lines.append, "b1", RuntimeError("boom"))  # type: ignore[arg-type]
    assert api.posts == [] and lines == []
