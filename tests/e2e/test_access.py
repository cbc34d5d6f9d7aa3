"""Users, logins, tokens, owners and collaborators, through the CLI, the API and git."""

from __future__ import annotations

import json
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.platform import PAAS, Platform, app_repo, commit_all, git

pytestmark = pytest.mark.e2e


@dataclass
class Person:
    """A user on another machine: their own config dir, the API's URL, no admin token."""

    email: str
    password: str
    env: dict[str, str]

    @property
    def credentials(self) -> Path:
        return Path(self.env["XDG_CONFIG_HOME"]) / "paas" / "credentials.json"

    @property
    def token(self) -> str:
        return json.loads(self.credentials.read_text())["token"]

    def paas(self, *args: str, check: bool = True,
             stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return run(self.env, *args, check=check, stdin=stdin)


def run(env: dict[str, str], *args: str, check: bool = True,
        stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([PAAS, *args], env=env, input=stdin or "", capture_output=True,
                            text=True, timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"paas {' '.join(args)}: {result.stdout}{result.stderr}")
    return result


def person(platform: Platform, tmp_path: Path, name: str) -> Person:
    """A new user, created by the admin, not yet logged in."""
    email = f"{name}-{uuid.uuid4().hex[:8]}@example.com"
    password = f"pw {uuid.uuid4().hex}"
    created = run(platform.env, "users:create", email, "--password-stdin", stdin=password + "\n")
    assert f"Created user {email}" in created.stdout
    env = {k: v for k, v in platform.env.items() if k != "PAAS_HOME"}
    env.update(PAAS_API_URL=platform.api_url, XDG_CONFIG_HOME=str(tmp_path / name))
    return Person(email, password, env)


def login(someone: Person) -> None:
    result = someone.paas("login", "--email", someone.email, "--password-stdin",
                          stdin=someone.password + "\n")
    assert f"Logged in as {someone.email}" in result.stdout


def api_status(platform: Platform, token: str, path: str) -> int:
    return httpx.get(f"{platform.api_url}{path}", headers={"Authorization": f"Bearer {token}"},
                     timeout=30).status_code


def push(platform: Platform, repo: Path, app: str, token: str) -> subprocess.CompletedProcess:
    return git(repo, "push", platform.remote_url(app, token), "main", check=False)


def test_two_users_are_refused_each_others_apps_until_one_adds_the_other(
        platform: Platform, tmp_path: Path) -> None:
    alice, bob = person(platform, tmp_path, "alice"), person(platform, tmp_path, "bob")
    login(alice)
    login(bob)
    alice.paas("apps:create", "acc-alice")
    bob.paas("apps:create", "acc-bob")
    try:
        repo = app_repo(tmp_path, "procfile-only")
        assert push(platform, repo, "acc-alice", alice.token).returncode == 0

        assert alice.paas("auth:whoami").stdout.strip() == alice.email
        assert [a["name"] for a in json.loads(bob.paas("apps", "--json").stdout)] == ["acc-bob"]
        admin_sees = {a["name"] for a in json.loads(platform.paas("apps", "--json").stdout)}
        assert {"acc-alice", "acc-bob"} <= admin_sees
        _refused(platform, bob, repo)

        alice.paas("access:add", bob.email, "-a", "acc-alice")
        assert json.loads(alice.paas("access", "-a", "acc-alice", "--json").stdout) == [
            {"email": alice.email, "role": "owner"},
            {"email": bob.email, "role": "collaborator"}]
        assert "done, v2" in bob.paas("config:set", "BY_BOB=1", "-a", "acc-alice").stdout
        (repo / "index.html").write_text("bob was here\n")
        commit_all(repo, "bob's change")
        assert push(platform, repo, "acc-alice", bob.token).returncode == 0
        platform.wait_for("acc-alice", "bob was here")
        for args, message in (
                (("apps:destroy", "acc-alice", "--confirm", "acc-alice"), "only the owner"),
                (("access:add", bob.email, "-a", "acc-alice"), "only the owner"),
                (("users:create", "eve@example.com"), "only the platform's admin")):
            refused = bob.paas(*args, check=False)
            assert refused.returncode != 0 and message in refused.stderr

        alice.paas("access:remove", bob.email, "-a", "acc-alice")
        _refused(platform, bob, repo)
    finally:
        for app in ("acc-alice", "acc-bob"):
            platform.paas("apps:destroy", app, "--confirm", app, check=False)


def _refused(platform: Platform, bob: Person, repo: Path) -> None:
    """Bob cannot see or change acc-alice by any door: CLI, API or git."""
    for args in (("config", "-a", "acc-alice"), ("config:set", "X=1", "-a", "acc-alice"),
                 ("releases", "-a", "acc-alice"), ("apps:info", "-a", "acc-alice"),
                 ("apps:destroy", "acc-alice", "--confirm", "acc-alice")):
        result = bob.paas(*args, check=False)
        assert result.returncode != 0, args
        assert "no app named 'acc-alice'" in result.stderr, args
    assert "acc-alice" not in bob.paas("apps").stdout
    assert api_status(platform, bob.token, "/v1/apps/acc-alice/config") == 404
    pushed = push(platform, repo, "acc-alice", bob.token)
    assert pushed.returncode != 0 and "no app named 'acc-alice'" in pushed.stderr
    fetched = git(repo, "ls-remote", platform.remote_url("acc-alice", bob.token), check=False)
    assert fetched.returncode != 0


def test_tokens_login_and_logout(platform: Platform, tmp_path: Path) -> None:
    carol = person(platform, tmp_path, "carol")
    wrong = carol.paas("login", "--email", carol.email, "--password-stdin", check=False,
                       stdin="not the password\n")
    assert wrong.returncode != 0 and "wrong email or password" in wrong.stderr
    assert not carol.credentials.exists()
    login(carol)
    assert oct(carol.credentials.stat().st_mode & 0o777) == "0o600"

    created = carol.paas("tokens:create", "--description", "ci").stdout.strip()
    tokens = json.loads(carol.paas("tokens", "--json").stdout)
    as_ci = {**carol.env, "PAAS_API_TOKEN": created}

    assert [(t["description"], t["current"]) for t in tokens][-1] == ("ci", False)
    assert run(as_ci, "auth:whoami").stdout.strip() == carol.email
    assert created not in carol.paas("tokens").stdout
    carol.paas("tokens:revoke", str(tokens[-1]["id"]))
    revoked = run(as_ci, "auth:whoami", check=False)
    assert revoked.returncode != 0 and "invalid API token" in revoked.stderr
    assert git(tmp_path, "ls-remote", platform.remote_url("acc-none", created),
               check=False).returncode != 0

    saved = carol.token
    elsewhere = Person(carol.email, carol.password, {**carol.env,
                                                     "XDG_CONFIG_HOME": str(tmp_path / "b")})
    elsewhere.paas("login", "--token", saved)
    assert elsewhere.paas("whoami").stdout.strip() == carol.email
    assert "Logged out" in carol.paas("logout").stdout
    assert not carol.credentials.exists()
    assert api_status(platform, saved, "/v1/account") == 401
    assert "not logged in" in carol.paas("logout").stdout
    elsewhere.paas("logout")


def test_only_the_admin_lists_and_creates_users(platform: Platform, tmp_path: Path) -> None:
    dave = person(platform, tmp_path, "dave")
    login(dave)

    listed = json.loads(platform.paas("users", "--json").stdout)
    refused = dave.paas("users", check=False)
    duplicate = run(platform.env, "users:create", dave.email, "--password-stdin", check=False,
                    stdin="another password\n")
    short = run(platform.env, "users:create", "x@example.com", "--password-stdin", check=False,
                stdin="short\n")

    assert {"email": dave.email, "role": "user"} in [
        {k: u[k] for k in ("email", "role")} for u in listed]
    assert refused.returncode != 0 and "only the platform's admin" in refused.stderr
    assert duplicate.returncode != 0 and "exists already" in duplicate.stderr
    assert short.returncode != 0 and "a password needs 8" in short.stderr


def test_a_user_takes_no_hostname_under_another_apps_wildcard_nor_a_wildcard_over_its_names(
        platform: Platform, tmp_path: Path) -> None:
    erin, frank = person(platform, tmp_path, "erin"), person(platform, tmp_path, "frank")
    login(erin)
    login(frank)
    zone = f"z{uuid.uuid4().hex[:8]}.test"
    erin.paas("apps:create", "acc-erin")
    frank.paas("apps:create", "acc-frank")
    try:
        erin.paas("domains:add", f"*.{zone}", "-a", "acc-erin")
        erin.paas("domains:add", f"www.other-{zone}", "-a", "acc-erin")

        under = frank.paas("domains:add", f"a.{zone}", "-a", "acc-frank", check=False)
        deeper = frank.paas("domains:add", f"*.deep.{zone}", "-a", "acc-frank", check=False)
        over = httpx.post(f"{platform.api_url}/v1/apps/acc-frank/domains",
                          json={"hostname": f"*.other-{zone}"},
                          headers={"Authorization": f"Bearer {frank.token}"}, timeout=30)
        for refused in (under, deeper):
            assert refused.returncode != 0
            assert f"is covered by *.{zone}, a domain of another app" in refused.stderr
            assert "acc-erin" not in refused.stderr + refused.stdout
        assert over.status_code == 409
        assert (f"covers www.other-{zone}, a domain of another app"
                in over.json()["message"]), over.text
        assert "acc-erin" not in over.text
        # The admin follows the same rule, and may be told which app holds the name.
        by_admin = platform.paas("domains:add", f"b.{zone}", "-a", "acc-frank", check=False)
        assert by_admin.returncode != 0 and "another app (acc-erin)" in by_admin.stderr
        # A wildcard over a name anyone may register under takes no one's future domains.
        for suffix in ("*.co.uk", "*.com"):
            broad = frank.paas("domains:add", suffix, "-a", "acc-frank", check=False)
            assert broad.returncode != 0 and "which anyone may register under" in broad.stderr

        # Positive controls: the wildcard's own app may add names under it; names that overlap
        # nothing of another app are anyone's.
        erin.paas("domains:add", f"a.{zone}", "-a", "acc-erin")
        frank.paas("domains:add", f"www.{uuid.uuid4().hex[:8]}-{zone}", "-a", "acc-frank")
        frank.paas("domains:add", f"*.frank-{zone}", "-a", "acc-frank")
        listed = {d["hostname"] for d in json.loads(
            frank.paas("domains", "-a", "acc-frank", "--json").stdout)}
        assert f"*.frank-{zone}" in listed and f"a.{zone}" not in listed
    finally:
        for app in ("acc-erin", "acc-frank"):
            platform.paas("apps:destroy", app, "--confirm", app, check=False)
