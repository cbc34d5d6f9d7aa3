"""Git over SSH, push order and hostile pushes: the real git and ssh clients against the
receiver (asyncssh in its own event loop, the HTTP one under uvicorn), with a small real
backend whose deploys move the ref by compare-and-swap."""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncssh
import httpx
import pytest
from dulwich.protocol import pkt_line

from paas.git import ssh
from paas.git.ssh_listen import listening_socket
from tests.integration.test_git_http import (
    TOKEN,
    FakeBackend,
    PushProcess,
    Server,
    commit,
    git,
    head,
    server,  # noqa: F401 - the HTTP fixture, for the tests that use both transports
)

MAX_PUSH_BYTES = 256 * 1024


@dataclass
class SshServer:
    backend: FakeBackend
    port: int
    home: Path

    def url(self, app: str) -> str:
        return f"ssh://git@127.0.0.1:{self.port}/{app}.git"


@pytest.fixture(scope="module")
def ssh_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    backend = FakeBackend(tmp_path_factory.mktemp("ssh-repos"))
    home = tmp_path_factory.mktemp("ssh-home")
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    acceptor = asyncio.run_coroutine_threadsafe(
        ssh.start_server(backend, home, listening_socket("127.0.0.1", 0), MAX_PUSH_BYTES),
        loop).result(10)
    try:
        yield SshServer(backend, acceptor.get_port(), home)
    finally:
        acceptor.close()
        asyncio.run_coroutine_threadsafe(acceptor.wait_closed(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def make_key(directory: Path, name: str) -> Path:
    key = directory / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{name}@test",
                    "-f", str(key)], check=True)
    return key


def register(target: SshServer, key: Path, user: int = 1) -> None:
    public = asyncssh.read_public_key(f"{key}.pub")
    target.backend.keys[public.get_fingerprint("sha256")] = user


def ssh_command(key: Path) -> list[str]:
    known = key.parent / "known_hosts"
    return ["ssh", "-F", "/dev/null", "-i", str(key), "-o", "IdentitiesOnly=yes",
            "-o", f"UserKnownHostsFile={known}", "-o", "StrictHostKeyChecking=accept-new",
            "-o", "BatchMode=yes"]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir()
    (home / ".gitconfig").write_text(
        "[user]\n\tname = Test\n\temail = test@example.com\n[init]\n\tdefaultBranch = main\n"
    )
    key = make_key(tmp_path, "alice")
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(home),
            "GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1", "LANG": "C",
            "LC_ALL": "C", "GIT_SSH_COMMAND": " ".join(ssh_command(key)), "KEY": str(key)}


def work_repo(env: dict[str, str], root: Path, url: str, name: str = "work") -> Path:
    work = root / name
    work.mkdir()
    assert git(env, work, "init", "-q", "-b", "main").returncode == 0
    assert git(env, work, "remote", "add", "paas", url).returncode == 0
    return commit(env, work, "app.py", f"print('{name}')\n")


def fsck_clean(path: Path) -> bool:
    result = subprocess.run(["git", "--git-dir", str(path), "fsck", "--no-dangling"],
                            capture_output=True, text=True)
    return result.returncode == 0 and not result.stderr.strip()


def test_ssh_push_streams_and_clone_returns_what_is_deployed(
    ssh_server: SshServer, env: dict[str, str], tmp_path: Path
) -> None:
    app, state = ssh_server.backend.add_app()
    register(ssh_server, Path(env["KEY"]))
    work = work_repo(env, tmp_path, ssh_server.url(app))
    state.gate.clear()

    push = PushProcess(env, work, "paas", "main")
    push.wait_for("remote: -----> Building")
    assert state.ref() is None  # streamed while the deploy is still held
    state.gate.set()
    assert push.finish() == 0, push.stderr
    assert "remote: -----> Releasing v1" in push.stderr
    assert state.ref() == head(env, work)

    clone = git(env, tmp_path, "clone", "-q", ssh_server.url(app), "clone")
    assert clone.returncode == 0, clone.stderr
    assert head(env, tmp_path / "clone") == head(env, work)

    shallow = git(env, tmp_path, "clone", "-q", "--depth", "1", ssh_server.url(app), "shallow")
    assert shallow.returncode == 0, shallow.stderr
    commit(env, tmp_path / "shallow", "app.py", "print('from a shallow clone')\n")
    pushed = git(env, tmp_path / "shallow", "push", "origin", "main")
    assert pushed.returncode == 0, pushed.stderr
    assert state.ref() == head(env, tmp_path / "shallow")
    assert fsck_clean(state.path)


def test_only_git_commands_for_allowed_apps_with_known_keys(
    ssh_server: SshServer, env: dict[str, str], tmp_path: Path
) -> None:
    app, state = ssh_server.backend.add_app()
    key = Path(env["KEY"])
    register(ssh_server, key)

    def run(*args: str, options: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*ssh_command(key), *options, "-p", str(ssh_server.port),
                               "git@127.0.0.1", *args], capture_output=True, text=True,
                              timeout=30, stdin=subprocess.DEVNULL, env=env)

    for refused in (run(), run("ls", "/"), run("git-receive-pack", f"'{app}.git'; ls"),
                    run("cat", "/etc/passwd")):
        assert refused.returncode != 0
        assert "paas serves git here, nothing else" in refused.stderr, refused.stderr
    pty = run("bash", options=("-tt",))
    assert pty.returncode != 0
    assert "PTY allocation request failed" in pty.stderr
    sftp = subprocess.run(["sftp", "-F", "/dev/null", "-i", str(key), "-o", "BatchMode=yes",
                           "-o", f"UserKnownHostsFile={key.parent / 'known_hosts'}",
                           "-P", str(ssh_server.port), "git@127.0.0.1"],
                          capture_output=True, text=True, timeout=30, input="ls\n", env=env)
    assert sftp.returncode != 0
    remote = run(options=("-N", "-o", "ExitOnForwardFailure=yes", "-R", "0:127.0.0.1:22"))
    assert remote.returncode != 0
    assert "remote port forwarding failed" in remote.stderr.lower(), remote.stderr
    direct = run(options=("-W", f"127.0.0.1:{ssh_server.port}"))
    assert direct.returncode != 0
    assert "open failed" in direct.stderr, direct.stderr

    other = make_key(tmp_path, "mallory")
    unknown = subprocess.run([*ssh_command(other), "-p", str(ssh_server.port), "git@127.0.0.1",
                              f"git-upload-pack '{app}.git'"], capture_output=True, text=True,
                             timeout=30, stdin=subprocess.DEVNULL, env=env)
    assert unknown.returncode == 255
    assert "Permission denied (publickey)" in unknown.stderr

    register(ssh_server, other, user=2)  # a known user, but not on this app
    work = work_repo(env, tmp_path, ssh_server.url(app))
    refused = git({**env, "GIT_SSH_COMMAND": " ".join(ssh_command(other))}, work,
                  "push", "paas", "main")
    assert refused.returncode != 0
    assert f"no app named '{app}'" in refused.stderr
    assert state.ref() is None


def test_a_waiting_push_says_so_then_fast_forwards(
    ssh_server: SshServer, env: dict[str, str], tmp_path: Path
) -> None:
    app, state = ssh_server.backend.add_app()
    register(ssh_server, Path(env["KEY"]))
    first = work_repo(env, tmp_path, ssh_server.url(app))
    assert git(env, first, "push", "paas", "main").returncode == 0
    second = tmp_path / "second"
    assert git(env, tmp_path, "clone", "-q", ssh_server.url(app), "second").returncode == 0

    state.gate.clear()
    commit(env, first, "app.py", "print('first')\n")
    one = PushProcess(env, first, "paas", "main")
    one.wait_for("remote: -----> Building")
    # the second builds on the first's commit, which is not deployed yet
    assert git(env, second, "pull", "-q", str(first), "main").returncode == 0
    commit(env, second, "other.py", "print('second')\n")
    two = PushProcess(env, second, "origin", "main")
    two.wait_for("remote: -----> Waiting for the push in progress")
    assert state.ref() != head(env, first)
    state.gate.set()

    assert one.finish() == 0, one.stderr
    assert two.finish() == 0, two.stderr
    assert state.ref() == head(env, second)
    assert [d.new for d in state.deploys[-2:]] == [head(env, first), head(env, second)]


def test_a_waiting_push_that_does_not_fast_forward_is_refused_unless_forced(
    ssh_server: SshServer, env: dict[str, str], tmp_path: Path
) -> None:
    app, state = ssh_server.backend.add_app()
    register(ssh_server, Path(env["KEY"]))
    first = work_repo(env, tmp_path, ssh_server.url(app))
    assert git(env, first, "push", "paas", "main").returncode == 0
    assert git(env, tmp_path, "clone", "-q", ssh_server.url(app), "second").returncode == 0
    second = tmp_path / "second"

    for force in ((), ("--force",)):
        state.gate.clear()
        commit(env, first, "app.py", f"print('first {force}')\n")
        one = PushProcess(env, first, "paas", "main", "--force")
        one.wait_for("remote: -----> Building")
        if force:  # rewrite history, so that the push is not a fast-forward from anything
            assert git(env, second, "commit", "-q", "--amend", "-m", "rewritten").returncode == 0
        else:
            commit(env, second, "other.py", "print('second')\n")
        two = PushProcess(env, second, "origin", "main", *force)
        two.wait_for("remote: -----> Waiting for the push in progress")
        state.gate.set()
        assert one.finish() == 0, one.stderr

        if force:
            assert two.finish() == 0, two.stderr
            assert state.ref() == head(env, second)
        else:
            assert two.finish() != 0
            assert "fetch first" in two.stderr
            assert state.ref() == head(env, first)
        assert fsck_clean(state.path)


def test_pushes_to_different_apps_deploy_at_the_same_time(
    ssh_server: SshServer, env: dict[str, str], tmp_path: Path
) -> None:
    (a, state_a), (b, state_b) = ssh_server.backend.add_app(), ssh_server.backend.add_app()
    register(ssh_server, Path(env["KEY"]))
    state_a.gate.clear()
    one = PushProcess(env, work_repo(env, tmp_path, ssh_server.url(a), "a"), "paas", "main")
    one.wait_for("remote: -----> Building")
    two = git(env, work_repo(env, tmp_path, ssh_server.url(b), "b"), "push", "paas", "main")
    assert two.returncode == 0, two.stderr  # while the first is still held
    assert "Waiting" not in two.stderr
    assert state_b.ref() is not None and state_a.ref() is None
    state_a.gate.set()
    assert one.finish() == 0


def test_ssh_client_that_disconnects_does_not_cancel_the_deploy(
    ssh_server: SshServer, env: dict[str, str], tmp_path: Path
) -> None:
    app, state = ssh_server.backend.add_app()
    register(ssh_server, Path(env["KEY"]))
    work = work_repo(env, tmp_path, ssh_server.url(app))
    state.gate.clear()
    push = PushProcess(env, work, "paas", "main")
    push.wait_for("remote: -----> Building")
    push.kill()
    time.sleep(0.2)
    state.gate.set()
    assert state.finished.wait(10)
    assert state.ref() == head(env, work)


def hostile_commit(env: dict[str, str], work: Path, tree_lines: str) -> str:
    tree = subprocess.run(["git", "mktree", "--missing"], cwd=work, env=env, input=tree_lines,
                          capture_output=True, text=True, check=True).stdout.strip()
    return subprocess.run(["git", "commit-tree", tree, "-p", "HEAD", "-m", "hostile"], cwd=work,
                          env=env, capture_output=True, text=True, check=True).stdout.strip()


def blob(env: dict[str, str], work: Path, content: str) -> str:
    return subprocess.run(["git", "hash-object", "-w", "--stdin"], cwd=work, env=env,
                          input=content, capture_output=True, text=True,
                          check=True).stdout.strip()


@pytest.mark.parametrize("transport", ["ssh", "http"])
def test_hostile_pushes_leave_the_repository_as_it_was(
    ssh_server: SshServer, server: Server, env: dict[str, str], tmp_path: Path,  # noqa: F811
    transport: str,
) -> None:
    backend = ssh_server.backend if transport == "ssh" else server.backend
    app, state = backend.add_app()
    register(ssh_server, Path(env["KEY"]))
    url = ssh_server.url(app) if transport == "ssh" else server.url(app)
    work = work_repo(env, tmp_path, url)
    assert git(env, work, "push", "paas", "main").returncode == 0
    deployed, before = state.ref(), state.files()

    evil = blob(env, work, "evil\n")
    sub = subprocess.run(["git", "mktree"], cwd=work, env=env, capture_output=True, text=True,
                         input=f"100644 blob {evil}\tconfig\n", check=True).stdout.strip()
    modules = blob(env, work, '[submodule "x"]\n\tpath = x\n\turl = --upload-pack=touch /tmp/x\n')
    cases = {
        "hasDotgit": hostile_commit(env, work, f"040000 tree {sub}\t.git\n"),
        "hasDotgit ": hostile_commit(env, work, f"040000 tree {sub}\t.GIT\n"),
        "gitmodulesUrl": hostile_commit(env, work, f"100644 blob {modules}\t.gitmodules\n"),
    }
    for reason, sha in cases.items():
        result = git(env, work, "push", "paas", f"{sha}:refs/heads/main")
        assert result.returncode != 0, reason
        assert reason.strip() in result.stderr, result.stderr
        assert "unpacker error" in result.stderr or "unpack" in result.stderr

    # git itself will not send a pack with a dangling link: send one by hand
    dangling = hostile_commit(env, work, f"100644 blob {'1' * 40}\tmissing.txt\n")
    names = subprocess.run(["git", "rev-parse", dangling, f"{dangling}^{{tree}}"], cwd=work,
                           env=env, capture_output=True, text=True, check=True).stdout
    pack = subprocess.run(["git", "pack-objects", "--stdout"], cwd=work, env=env,
                          input=names.encode(), capture_output=True, check=True).stdout
    command = f"{deployed} {dangling} refs/heads/main\0report-status side-band-64k\n"
    body = pkt_line(command.encode()) + pkt_line(None) + pack
    if transport == "ssh":
        answer = subprocess.run([*ssh_command(Path(env["KEY"])), "-p", str(ssh_server.port),
                                 "git@127.0.0.1", f"git-receive-pack '/{app}.git'"], input=body,
                                capture_output=True, timeout=30, env=env).stdout
    else:
        answer = httpx.post(f"{server.base}/git/{app}.git/git-receive-pack", content=body,
                            headers={"Content-Type": "application/x-git-receive-pack-request"},
                            auth=("u", TOKEN), timeout=30).content
    assert b"did not receive expected object 1111111111" in answer
    assert b"ng refs/heads/main unpacker error" in answer

    for ref in ("refs/heads/a..b", "refs/heads/x.lock", "refs/heads/../../config",
                "refs/heads/bad\x01"):
        result = git(env, work, "push", "paas", f"HEAD:{ref}")
        assert result.returncode != 0, ref
    deleted = git(env, work, "push", "paas", ":main")
    assert deleted.returncode != 0

    commit(env, work, "big.bin", os.urandom(400_000))
    big = git(env, work, "push", "paas", "main")
    assert big.returncode != 0
    assert f"larger than the limit of {MAX_PUSH_BYTES} bytes" in big.stderr, big.stderr

    assert state.ref() == deployed
    assert state.files() == before
    assert fsck_clean(state.path)
