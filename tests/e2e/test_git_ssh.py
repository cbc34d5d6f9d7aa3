"""git push and clone over SSH on the whole platform, with the real git and ssh clients and
keys added with `paas keys:add`; the same access rules as over HTTP."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.platform import PAAS, Platform, app_repo, commit_all, git

pytestmark = pytest.mark.e2e


def make_key(directory: Path, name: str) -> Path:
    key = directory / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{name}@laptop",
                    "-f", str(key)], check=True)
    return key


def ssh_command(key: Path) -> str:
    return (f"ssh -F /dev/null -i {key} -o IdentitiesOnly=yes -o BatchMode=yes "
            f"-o UserKnownHostsFile={key.parent / 'known_hosts'} "
            "-o StrictHostKeyChecking=accept-new")


def ssh_url(platform: Platform, app: str) -> str:
    return f"ssh://git@127.0.0.1:{platform.ssh_port}/{app}.git"


def test_keys_then_push_and_clone_over_ssh(platform: Platform, tmp_path: Path) -> None:
    key = make_key(tmp_path, "alice")
    bad = platform.paas("keys:add", str(key), check=False)
    assert bad.returncode != 0
    assert "PRIVATE key" in bad.stderr
    added = platform.paas("keys:add", f"{key}.pub")
    assert "done (SHA256:" in added.stdout
    listed = json.loads(platform.paas("keys", "--json").stdout)
    assert [k["comment"] for k in listed] == ["alice@laptop"]
    again = platform.paas("keys:add", f"{key}.pub", check=False)
    assert again.returncode != 0 and "already added" in again.stderr

    platform.paas("apps:create", "sshapp")
    repo = app_repo(tmp_path, "procfile-only")
    git(repo, "config", "core.sshCommand", ssh_command(key))
    pushed = git(repo, "push", ssh_url(platform, "sshapp"), "main", check=False)

    assert pushed.returncode == 0, pushed.stderr
    assert "remote: -----> Released v1" in pushed.stderr
    assert "Procfile-only app" in platform.get("sshapp").text
    clone = git(tmp_path, "-c", f"core.sshCommand={ssh_command(key)}", "clone", "-q",
                ssh_url(platform, "sshapp"), "clone", check=False)
    assert clone.returncode == 0, clone.stderr
    head = git(repo, "rev-parse", "HEAD").stdout
    assert git(tmp_path / "clone", "rev-parse", "HEAD").stdout == head

    shell = subprocess.run([*ssh_command(key).split(), "-p", str(platform.ssh_port),
                            "git@127.0.0.1", "ls"], capture_output=True, text=True, timeout=30,
                           stdin=subprocess.DEVNULL)
    assert shell.returncode != 0
    assert "paas serves git here, nothing else" in shell.stderr

    platform.paas("keys:remove", "alice@laptop")
    assert json.loads(platform.paas("keys", "--json").stdout) == []
    (repo / "index.html").write_text("<p>after the key was removed</p>\n")
    commit_all(repo, "one more")
    refused = git(repo, "push", ssh_url(platform, "sshapp"), "main", check=False)
    assert refused.returncode != 0
    assert "Permission denied (publickey)" in refused.stderr
    assert git(tmp_path, "ls-remote", platform.remote_url("sshapp"), "main").stdout.startswith(
        head.strip())


def test_a_key_of_another_user_reaches_only_that_users_apps(platform: Platform,
                                                            tmp_path: Path) -> None:
    created = json.loads(platform.paas("users:create", "bob@example.com", "--json").stdout)
    login = httpx.post(f"{platform.api_url}/v1/login", timeout=30,
                       json={"email": "bob@example.com", "password": created["password"]})
    bob = {**platform.env, "PAAS_API_TOKEN": login.json()["token"]}
    key = make_key(tmp_path, "bob")
    added = subprocess.run([PAAS, "keys:add", f"{key}.pub"], env=bob,
                           capture_output=True, text=True, timeout=60)
    assert added.returncode == 0, added.stderr

    platform.paas("apps:create", "adminsapp")
    repo = app_repo(tmp_path, "procfile-only")
    git(repo, "config", "core.sshCommand", ssh_command(key))
    refused = git(repo, "push", ssh_url(platform, "adminsapp"), "main", check=False)
    assert refused.returncode != 0
    assert "no app named 'adminsapp'" in refused.stderr
    assert git(repo, "ls-remote", platform.remote_url("adminsapp")).stdout == ""

    platform.paas("access:add", "bob@example.com", "-a", "adminsapp")
    pushed = git(repo, "push", ssh_url(platform, "adminsapp"), "main", check=False)
    assert pushed.returncode == 0, pushed.stderr
    assert "remote: -----> Released v1" in pushed.stderr
