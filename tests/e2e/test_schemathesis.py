"""schemathesis against /v1/openapi.json with a valid token, on a platform of its own (it
creates, changes and deletes whatever the API lets it): no 5xx, and no status code the
document does not list. The path parameters name a real app, release, build and dyno, so the
generated calls reach the handlers instead of stopping at a 404."""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.platform import PAAS, Platform, app_repo, git, second_subnet

pytestmark = pytest.mark.e2e
SCHEMATHESIS = str(Path(PAAS).parent / "schemathesis")


@pytest.fixture(scope="module")
def own_platform() -> Iterator[Platform]:
    platform = Platform.create(PAAS_DYNO_SUBNET=second_subnet())
    try:
        platform.up()
        yield platform
    finally:
        platform.down()


def test_the_api_keeps_its_openapi_promises(own_platform: Platform, tmp_path: Path) -> None:
    platform = own_platform
    app = f"st-{uuid.uuid4().hex[:6]}"
    platform.paas("apps:create", app)
    assert git(app_repo(tmp_path, "procfile-only"), "push", platform.remote_url(app), "main",
               check=False).returncode == 0
    build = json.loads(platform.paas("builds", "-a", app, "--json").stdout)[0]["id"]
    config = tmp_path / "schemathesis.toml"
    config.write_text("[parameters]\n" + "".join(
        f'{name} = "{value}"\n' for name, value in
        {"app": app, "version": "1", "build": build, "id": build, "name": "web.1"}.items()))
    result = subprocess.run(
        [SCHEMATHESIS, "--config-file", str(config), "run",
         f"{platform.api_url}/v1/openapi.json", "-H", f"Authorization: Bearer {platform.token}",
         "--checks", "not_a_server_error,status_code_conformance", "--max-examples", "20",
         "--phases", "examples,coverage,fuzzing", "--workers", "2", "--seed", "1",
         # the terminal is a WebSocket, which OpenAPI cannot describe
         "--exclude-path-regex", "/attach$"],
        capture_output=True, text=True, timeout=600, env={**platform.env, "NO_COLOR": "1"},
        cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
    tested = re.search(r"(\d+) generated, (\d+) passed", result.stdout)
    assert tested and int(tested.group(1)) > 500 and tested.group(1) == tested.group(2), \
        result.stdout[-3000:]
    with platform.api() as api:  # and the platform still answers
        assert api.get("/healthz").status_code == 200
