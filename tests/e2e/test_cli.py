"""The CLI as a user meets it: releases and rollback, help, --json, terminals and pipes,
errors."""

from __future__ import annotations

import json
import os
import pty
import subprocess
from pathlib import Path

import pytest

from tests.e2e.test_config import served
from tests.platform import PAAS, Platform, app_repo, commit_all, git

pytestmark = pytest.mark.e2e


def releases(platform: Platform, app: str) -> list[dict]:
    return json.loads(platform.paas("releases", "-a", app, "--json").stdout)


def test_rollback_serves_the_old_code_with_the_old_config(platform: Platform,
                                                          tmp_path: Path) -> None:
    platform.paas("apps:create", "cli-rollback")
    try:
        repo = app_repo(tmp_path, "env-echo")
        platform.paas("git:remote", "-a", "cli-rollback", cwd=repo)
        assert git(repo, "push", platform.remote_url("cli-rollback"), "main",
                   check=False).returncode == 0
        platform.paas("config:set", "FOO=a", cwd=repo)
        served(platform, "cli-rollback", 2)  # live before the next push supersedes it
        (repo / "code.txt").write_text("two\n")
        commit_all(repo, "two")
        assert git(repo, "push", platform.remote_url("cli-rollback"), "main",
                   check=False).returncode == 0
        platform.paas("config:set", "FOO=b", "BAR=new", cwd=repo)
        assert served(platform, "cli-rollback", 4)["code"] == "two"

        listed = platform.paas("releases", cwd=repo).stdout.splitlines()
        info = platform.paas("releases:info", "v2", cwd=repo).stdout
        rolled = platform.paas("rollback", "v2", cwd=repo).stdout
        after = served(platform, "cli-rollback", 5)

        assert listed[1].split("\t")[:4] == ["v4", "Set FOO, BAR config vars",
                                             "succeeded (current)", "admin@localhost"]
        assert listed[-1].startswith("v1\tDeploy ")
        assert listed[1].split("\t")[4].endswith("ago")
        assert "Change:  Set FOO config vars" in info and "Config:  FOO" in info
        assert "done, v5 (Rollback to v2)" in rolled
        assert (after["code"], after["env"].get("FOO"), "BAR" in after["env"]) == ("one", "a",
                                                                                   False)
        assert json.loads(platform.paas("config", "--json", cwd=repo).stdout) == {"FOO": "a"}
        newest = releases(platform, "cli-rollback")[0]
        assert (newest["version"], newest["description"], newest["current"],
                newest["created_by"]) == (5, "Rollback to v2", True, "admin@localhost")

        platform.paas("rollback", cwd=repo)
        again = served(platform, "cli-rollback", 6)
        assert (again["code"], again["env"].get("FOO")) == ("two", "b")
        assert releases(platform, "cli-rollback")[0]["description"] == "Rollback to v4"
        for args, message in ((("rollback", "v99"), "cli-rollback has no release v99"),
                              (("rollback", "v6"), "v6 is the current release already"),
                              (("releases:info", "seven"), "is not a release version")):
            result = platform.paas(*args, cwd=repo, check=False)
            assert result.returncode != 0 and message in result.stderr, result.stderr
    finally:
        platform.paas("apps:destroy", "cli-rollback", "--confirm", "cli-rollback")


def test_rollback_needs_a_release(platform: Platform) -> None:
    platform.paas("apps:create", "cli-empty")
    try:
        result = platform.paas("rollback", "-a", "cli-empty", check=False)
        assert result.returncode != 0
        assert "no release to roll back from: push code first" in result.stderr
    finally:
        platform.paas("apps:destroy", "cli-empty", "--confirm", "cli-empty")


def test_every_listing_speaks_json(platform: Platform, tmp_path: Path) -> None:
    platform.paas("apps:create", "cli-json")
    try:
        repo = app_repo(tmp_path, "procfile-only")
        assert git(repo, "push", platform.remote_url("cli-json"), "main",
                   check=False).returncode == 0
        listings = [("apps",), ("apps:info",), ("builds",), ("releases",), ("releases:info", "v1"),
                    ("config",), ("ps",), ("logs",), ("access",), ("tokens",), ("users",),
                    ("auth:whoami",), ("nodes",)]
        parsed = {}
        for listing in listings:
            output = platform.paas(*listing, "--json", "-a", "cli-json").stdout \
                if listing[0] not in ("apps", "tokens", "users", "auth:whoami", "nodes") \
                else platform.paas(*listing, "--json").stdout
            parsed[listing[0]] = json.loads(output)
        assert parsed["releases:info"]["version"] == 1
        assert parsed["access"] == [{"email": "admin@localhost", "role": "owner"}]
        assert parsed["auth:whoami"]["email"] == "admin@localhost"
        assert [n["state"] for n in parsed["nodes"]] == ["ready"]
    finally:
        platform.paas("apps:destroy", "cli-json", "--confirm", "cli-json")


def on_terminal(platform: Platform, *args: str) -> str:
    """What `paas ARGS` shows when its output is a terminal."""
    leader, follower = pty.openpty()
    try:
        subprocess.run([PAAS, *args], env=platform.env, stdout=follower, stderr=follower,
                       stdin=subprocess.DEVNULL, timeout=60, check=True)
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(leader)
    return b"".join(chunks).decode()


def test_tables_and_colours_only_on_a_terminal(platform: Platform) -> None:
    platform.paas("apps:create", "cli-tty")
    try:
        piped = platform.paas("apps").stdout
        shown = on_terminal(platform, "apps")
    finally:
        platform.paas("apps:destroy", "cli-tty", "--confirm", "cli-tty")

    assert "\x1b[" not in piped and "NAME" not in piped
    assert "cli-tty\t-\thttp://cli-tty.localhost" in piped
    assert "\x1b[1mNAME" in shown
    assert "cli-tty  " in shown and "\t" not in shown


def test_help_for_one_command_and_errors_as_messages(platform: Platform) -> None:
    helped = platform.paas("help", "config:set").stdout
    unknown = platform.paas("help", "no:such", check=False)
    missing = platform.paas("config", "-a", "no-such-app", check=False)

    assert helped.startswith("Usage: paas config:set [OPTIONS] PAIRS...")
    assert "--no-restart" in helped
    assert platform.paas("config:set", "--help").stdout == helped
    assert unknown.returncode != 0 and "no command 'no:such'" in unknown.stderr
    assert missing.returncode == 1 and missing.stdout == ""
    assert missing.stderr.strip() == "!    no app named 'no-such-app': `paas apps` lists yours"
