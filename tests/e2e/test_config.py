"""Config vars as a user sets them with the CLI and a running dyno sees them."""

from __future__ import annotations

import json
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.platform import PAAS, Platform, app_repo, commit_all, git

pytestmark = pytest.mark.e2e

AWKWARD = {
    "SPACES": "  leading, inner  and trailing  ",
    "EQUALS": "a=b==c=",
    "QUOTES": "it's \"double\" `tick` $HOME \\n \\",
    "NEWLINES": "line one\nline two\r\n\ttabbed\n",
    "UNICODE": "héllo → 世界 🚀",
    "EMPTY": "",
    "SHELL": "$(touch /tmp/pwned); echo ${PATH} #",
}


@pytest.fixture
def created(platform: Platform) -> Iterator[list[str]]:
    """The apps a test creates, destroyed after it."""
    names: list[str] = []
    yield names
    for name in names:
        platform.paas("apps:destroy", name, "--confirm", name, check=False)


def deploy(platform: Platform, tmp_path: Path, app: str, created: list[str],
           sample: str = "env-echo") -> Path:
    platform.paas("apps:create", app)
    created.append(app)
    repo = app_repo(tmp_path, sample)
    result = git(repo, "push", platform.remote_url(app), "main", check=False)
    assert result.returncode == 0, result.stderr
    return repo


def served(platform: Platform, app: str, version: int, timeout: float = 60) -> dict[str, Any]:
    """What the app serves once release vN answers (and the router sends every request there)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = platform.get(app).json()
            if last["env"].get("PAAS_RELEASE_VERSION") == f"v{version}":
                return last
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.3)
    raise AssertionError(f"{app} never served v{version}; last: {last}")


def config_json(platform: Platform, app: str) -> dict[str, str]:
    return json.loads(platform.paas("config", "-a", app, "--json").stdout)


def test_awkward_values_reach_a_running_dyno_byte_for_byte(platform: Platform, tmp_path: Path,
                                                           created: list[str]) -> None:
    deploy(platform, tmp_path, "cfg-awkward", created)
    pairs = [f"{key}={value}" for key, value in AWKWARD.items()]

    result = platform.paas("config:set", *pairs, "-a", "cfg-awkward")

    assert "done, v2" in result.stdout
    env = served(platform, "cfg-awkward", 2)["env"]
    assert {key: env.get(key) for key in AWKWARD} == AWKWARD
    assert env["PORT"].isdigit() and env["DYNO"] == env["PS"] == "web.1"
    head = git(tmp_path / "env-echo", "rev-parse", "HEAD").stdout.strip()
    assert env["PAAS_SLUG_COMMIT"] == head
    assert config_json(platform, "cfg-awkward") == AWKWARD
    for key, value in AWKWARD.items():
        shown = subprocess.run([PAAS, "config:get", key, "-a", "cfg-awkward"], env=platform.env,
                               capture_output=True, check=True).stdout
        assert shown == value.encode() + b"\n"
    shell = subprocess.run([PAAS, "config", "--shell", "-a", "cfg-awkward"], env=platform.env,
                           capture_output=True, check=True).stdout
    printed = subprocess.run([b"/bin/sh", b"-c", shell + b'printf %s "$NEWLINES|$QUOTES|$SHELL"'],
                             capture_output=True, check=True).stdout
    assert printed.decode() == f"{AWKWARD['NEWLINES']}|{AWKWARD['QUOTES']}|{AWKWARD['SHELL']}"


def test_values_stay_out_of_releases_logs_and_errors(platform: Platform, tmp_path: Path,
                                                     created: list[str]) -> None:
    repo = deploy(platform, tmp_path, "cfg-secret", created)
    secret = f"s3cr3t-{uuid.uuid4().hex}"

    platform.paas("config:set", f"API_KEY={secret}", f"OTHER={secret}-2", "-a", "cfg-secret")
    bad_key = platform.paas("config:set", f"1BAD={secret}", "-a", "cfg-secret", check=False)
    no_key = platform.paas("config:set", secret, "-a", "cfg-secret", check=False)
    served(platform, "cfg-secret", 2)
    (repo / "code.txt").write_text("two\n")
    commit_all(repo, "two")
    pushed = git(repo, "push", platform.remote_url("cfg-secret"), "main", check=False)
    assert pushed.returncode == 0, pushed.stderr
    assert served(platform, "cfg-secret", 3)["env"]["API_KEY"] == secret

    assert bad_key.returncode != 0 and "invalid config var name '1BAD'" in bad_key.stderr
    assert no_key.returncode != 0 and "is not KEY=VALUE" in no_key.stderr
    releases = platform.paas("releases", "-a", "cfg-secret").stdout
    assert "Set API_KEY, OTHER config vars" in releases
    seen = {
        "release list": releases,
        "release list (json)": platform.paas("releases", "-a", "cfg-secret", "--json").stdout,
        "release info": platform.paas("releases:info", "v2", "-a", "cfg-secret",
                                      "--json").stdout,
        "errors": bad_key.stdout + bad_key.stderr + no_key.stdout + no_key.stderr,
        "build output": pushed.stdout + pushed.stderr,
        "app logs": platform.paas("logs", "-a", "cfg-secret", "--json").stdout,
        "platform logs": platform.output(),
    }
    assert [where for where, text in seen.items() if secret in text] == []
    assert json.loads(seen["release info"])["config_keys"] == ["API_KEY", "OTHER"]


def test_platform_keys_and_bad_names_are_refused_and_nothing_changes(
        platform: Platform, tmp_path: Path, created: list[str]) -> None:
    deploy(platform, tmp_path, "cfg-refuse", created)
    platform.paas("config:set", "KEEP=me", "-a", "cfg-refuse")

    for pair, message in (("PORT=80", "PORT is set by the platform"),
                          ("DYNO=x", "DYNO is set by the platform"),
                          ("9LIVES=x", "invalid config var name '9LIVES'"),
                          ("BAD-NAME=x", "invalid config var name 'BAD-NAME'")):
        result = platform.paas("config:set", "FINE=1", pair, "-a", "cfg-refuse", check=False)
        assert result.returncode != 0
        assert message in result.stderr

    assert config_json(platform, "cfg-refuse") == {"KEEP": "me"}
    versions = [r["version"] for r in json.loads(
        platform.paas("releases", "-a", "cfg-refuse", "--json").stdout)]
    assert versions == [2, 1]


def test_unset_and_no_restart(platform: Platform, tmp_path: Path, created: list[str]) -> None:
    repo = deploy(platform, tmp_path, "cfg-unset", created)
    platform.paas("config:set", "A=1", "B=2", "-a", "cfg-unset")

    unset = platform.paas("env:unset", "A", "-a", "cfg-unset")
    later = platform.paas("config:set", "C=3", "--no-restart", "-a", "cfg-unset")

    assert "done, v3" in unset.stdout
    assert "applies on the next deploy" in later.stdout
    env = served(platform, "cfg-unset", 3)["env"]
    assert ("A" in env, env.get("B"), "C" in env) == (False, "2", False)
    descriptions = [r["description"] for r in json.loads(
        platform.paas("releases", "-a", "cfg-unset", "--json").stdout)]
    assert descriptions[0] == "Unset A config vars"
    (repo / "code.txt").write_text("two\n")
    commit_all(repo, "two")
    assert git(repo, "push", platform.remote_url("cfg-unset"), "main",
               check=False).returncode == 0
    after = served(platform, "cfg-unset", 4)
    assert (after["code"], after["env"].get("B"), after["env"].get("C")) == ("two", "2", "3")


class RequestLoop(threading.Thread):
    """Requests the app back to back until stopped; counts what did not come back 200."""

    def __init__(self, platform: Platform, app: str) -> None:
        super().__init__(daemon=True)
        self.platform, self.app = platform, app
        self.stopping = threading.Event()
        self.sent = 0
        self.failures: list[str] = []
        self.values: set[str | None] = set()

    def run(self) -> None:
        while not self.stopping.is_set() and self.sent < 20000:
            self.sent += 1
            try:
                response = self.platform.get(self.app)
                if response.status_code != 200:
                    self.failures.append(f"{response.status_code} {response.text[:200]}")
                else:
                    self.values.add(response.json()["env"].get("COLOR"))
            except httpx.HTTPError as error:
                self.failures.append(repr(error))


def test_a_config_change_rolls_the_dynos_without_a_failed_request(
        platform: Platform, tmp_path: Path, created: list[str]) -> None:
    deploy(platform, tmp_path, "cfg-roll", created)
    served(platform, "cfg-roll", 1)
    loop = RequestLoop(platform, "cfg-roll")
    loop.start()
    try:
        platform.paas("config:set", "COLOR=blue", "-a", "cfg-roll")
        served(platform, "cfg-roll", 2)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            dynos = json.loads(platform.paas("ps", "-a", "cfg-roll", "--json").stdout)
            if [d["release"] for d in dynos] == [2]:
                break
            time.sleep(0.3)
        sent_before = loop.sent
        while loop.sent < sent_before + 20:
            time.sleep(0.05)
    finally:
        loop.stopping.set()
        loop.join(60)
    assert [d["release"] for d in dynos] == [2]
    assert loop.failures == []
    assert loop.values == {None, "blue"}
