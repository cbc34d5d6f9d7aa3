"""The git receiver over smart HTTP, driven by the real git client against a real uvicorn."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import itertools
import os
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from dulwich.protocol import Protocol, pkt_line
from dulwich.repo import Repo
from starlette.applications import Starlette

from paas.errors import NotFound, Unauthorized
from paas.git import PushRejected, RefUpdate, git_routes, session

TOKEN = "s3cret-token"
MAX_PUSH_BYTES = 256 * 1024
ZERO = "0" * 40
_names = itertools.count()


@dataclass
class AppState:
    path: Path
    gate: threading.Event = field(default_factory=threading.Event)
    reject: str | None = None
    deploys: list[RefUpdate] = field(default_factory=list)
    finished: threading.Event = field(default_factory=threading.Event)
    owner: int = 1

    def __post_init__(self) -> None:
        self.gate.set()

    def ref(self, name: str = "refs/heads/main") -> str | None:
        with Repo(str(self.path)) as repo:
            sha = repo.refs.as_dict().get(name.encode())
        return sha.decode() if sha else None

    def files(self) -> set[Path]:
        return {p for p in self.path.rglob("*") if p.is_file() and p.name != "packed-refs"}


class FakeBackend:
    """A small real backend: tokens, bare repos, a deploy that moves the ref by CAS."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.apps: dict[str, AppState] = {}
        self.keys: dict[str, int] = {}  # SSH key fingerprint -> user id

    def add_app(self) -> tuple[str, AppState]:
        name = f"app-{next(_names)}"
        path = self.root / f"{name}.git"
        with Repo.init_bare(str(path), mkdir=True) as repo:
            repo.refs.set_symbolic_ref(b"HEAD", b"refs/heads/main")
        self.apps[name] = AppState(path)
        return name, self.apps[name]

    def authorize(self, app: str, password: str | None, write: bool) -> None:
        if app not in self.apps:
            raise NotFound(f"no such app: {app}")
        if password != TOKEN:
            raise Unauthorized("bad token")

    def user_for_key(self, key: Any) -> int | None:
        return self.keys.get(key.get_fingerprint("sha256"))

    def authorize_user(self, app: str, user_id: int | None, write: bool) -> None:
        if app not in self.apps or user_id != self.apps[app].owner:
            raise NotFound(f"no app named {app!r}")

    def repo_path(self, app: str) -> Path:
        return self.apps[app].path

    async def deploy(self, app: str, update: RefUpdate) -> AsyncIterator[str]:
        state = self.apps[app]
        state.deploys.append(update)
        yield f"-----> Building {update.new[:7]}"
        yield "-----> Installing dependencies\n       done"
        assert await asyncio.to_thread(state.gate.wait, 30)
        if state.reject:
            raise PushRejected(state.reject)
        yield "-----> Releasing v1"
        with Repo(str(state.path)) as repo:
            ref, new = update.ref.encode(), update.new.encode()
            if update.old == ZERO:
                moved = repo.refs.add_if_new(ref, new)
            else:
                moved = repo.refs.set_if_equals(ref, update.old.encode(), new)
        if not moved:
            raise PushRejected("fetch first")
        state.finished.set()


@dataclass
class Server:
    backend: FakeBackend
    port: int

    def url(self, app: str, token: str = TOKEN) -> str:
        return f"http://user:{token}@127.0.0.1:{self.port}/git/{app}.git"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    backend = FakeBackend(tmp_path_factory.mktemp("repos"))
    app = Starlette(routes=git_routes(backend, max_push_bytes=MAX_PUSH_BYTES))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    uv = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not uv.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield Server(backend, sock.getsockname()[1])
    finally:
        uv.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir()
    (home / ".gitconfig").write_text(
        "[user]\n\tname = Test\n\temail = test@example.com\n[init]\n\tdefaultBranch = main\n"
    )
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_CONFIG_NOSYSTEM": "1",
        "LANG": "C",
        "LC_ALL": "C",
    }


def git(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


def make_work(env: dict[str, str], root: Path, url: str) -> Path:
    work = root / "work"
    work.mkdir()
    assert git(env, work, "init", "-q", "-b", "main").returncode == 0
    assert git(env, work, "remote", "add", "paas", url).returncode == 0
    return commit(env, work, "app.py", "print('hello')\n")


def commit(env: dict[str, str], work: Path, name: str, content: str | bytes) -> Path:
    path = work / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    assert git(env, work, "add", name).returncode == 0
    assert git(env, work, "commit", "-q", "-m", f"change {name}").returncode == 0
    return work


def head(env: dict[str, str], work: Path) -> str:
    return git(env, work, "rev-parse", "HEAD").stdout.strip()


class PushProcess:
    """A `git push` whose stderr is read as it arrives."""

    def __init__(self, env: dict[str, str], work: Path, *args: str) -> None:
        self.proc = subprocess.Popen(
            ["git", "push", *args],
            cwd=work,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        self._chunks: list[bytes] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        fd = self.proc.stderr.fileno()
        while chunk := os.read(fd, 4096):
            with self._changed:
                self._chunks.append(chunk)
                self._changed.notify_all()

    @property
    def stderr(self) -> str:
        with self._changed:
            return b"".join(self._chunks).decode(errors="replace")

    def wait_for(self, text: str, timeout: float = 15) -> None:
        with self._changed:
            found = self._changed.wait_for(lambda: text in self.stderr, timeout)
        assert found, f"{text!r} not in git's stderr: {self.stderr}"

    def finish(self, timeout: float = 30) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(5)
        assert self.proc.stderr is not None
        self.proc.stderr.close()
        return code

    def kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.finish()


def test_push_streams_progress_then_moves_ref_and_clone_returns_it(
    server: Server, env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app, state = server.backend.add_app()
    work = make_work(env, tmp_path, server.url(app))
    state.gate.clear()
    monkeypatch.setattr(session, "KEEPALIVE_SECONDS", 0.05)  # keepalives must not upset git

    push = PushProcess(env, work, "paas", "main")
    push.wait_for("remote: -----> Building")
    # the first line arrived while the deploy is still held: the response streams
    assert push.proc.poll() is None
    assert not state.finished.is_set()
    assert state.ref() is None
    time.sleep(0.3)
    state.gate.set()
    assert push.finish() == 0, push.stderr
    assert "remote: -----> Installing dependencies" in push.stderr
    assert "remote:        done" in push.stderr
    assert "remote: -----> Releasing v1" in push.stderr
    assert state.ref() == head(env, work)
    assert state.deploys == [RefUpdate("refs/heads/main", ZERO, head(env, work))]

    clone = git(env, tmp_path, "clone", "-q", server.url(app), "clone")
    assert clone.returncode == 0, clone.stderr
    assert head(env, tmp_path / "clone") == head(env, work)

    old = head(env, work)
    commit(env, work, "app.py", "print('hello again')\n")
    second = git(env, work, "push", "paas", "main")
    assert second.returncode == 0, second.stderr
    assert f"{old[:7]}..{head(env, work)[:7]}" in second.stderr
    assert state.ref() == head(env, work)
    assert state.deploys[-1] == RefUpdate("refs/heads/main", old, head(env, work))

    fetch = git(env, tmp_path / "clone", "pull", "-q", "--ff-only")
    assert fetch.returncode == 0, fetch.stderr
    assert head(env, tmp_path / "clone") == head(env, work)


def test_rejected_deploy_leaves_ref_alone(
    server: Server, env: dict[str, str], tmp_path: Path
) -> None:
    app, state = server.backend.add_app()
    work = make_work(env, tmp_path, server.url(app))
    state.reject = "build failed: no buildpack detected"

    result = git(env, work, "push", "paas", "main")

    assert result.returncode != 0
    assert "remote: -----> Building" in result.stderr
    assert "! [remote rejected] main -> main (build failed: no buildpack detected)" in (
        result.stderr
    )
    assert state.ref() is None


def test_only_main_or_master_can_be_pushed(
    server: Server, env: dict[str, str], tmp_path: Path
) -> None:
    app, state = server.backend.add_app()
    work = make_work(env, tmp_path, server.url(app))

    result = git(env, work, "push", "paas", "main:feature")

    assert result.returncode != 0
    assert "remote: only main or master can be deployed" in result.stderr
    assert "! [remote rejected] main -> feature (only main or master" in result.stderr
    assert "git push paas HEAD:main" in result.stderr
    assert state.deploys == []
    assert state.ref("refs/heads/feature") is None

    assert git(env, work, "push", "paas", "main").returncode == 0
    deleted = git(env, work, "push", "paas", ":main")
    assert deleted.returncode != 0
    assert state.ref() == head(env, work)


def test_wrong_token_changes_nothing(server: Server, env: dict[str, str], tmp_path: Path) -> None:
    app, state = server.backend.add_app()
    work = make_work(env, tmp_path, server.url(app, token="wrong"))
    before = state.files()

    result = git(env, work, "push", "paas", "main")

    assert result.returncode != 0
    assert "Authentication failed" in result.stderr
    assert state.files() == before
    assert state.deploys == []


def test_push_over_the_size_limit_is_refused(
    server: Server, env: dict[str, str], tmp_path: Path
) -> None:
    app, state = server.backend.add_app()
    work = make_work(env, tmp_path, server.url(app))
    # incompressible and over git's 1 MiB http.postBuffer: sent chunked, after a probe request
    commit(env, work, "blob.bin", os.urandom(3 * 512 * 1024))
    before = state.files()

    result = git(env, work, "push", "paas", "main")

    assert result.returncode != 0
    assert f"larger than the limit of {MAX_PUSH_BYTES} bytes" in result.stderr
    assert "! [remote rejected] main -> main (push too large)" in result.stderr
    assert state.files() == before
    assert state.deploys == []


def test_deploy_finishes_when_the_client_disconnects(
    server: Server, env: dict[str, str], tmp_path: Path
) -> None:
    app, state = server.backend.add_app()
    work = make_work(env, tmp_path, server.url(app))
    state.gate.clear()

    push = PushProcess(env, work, "paas", "main")
    push.wait_for("remote: -----> Building")
    push.kill()
    time.sleep(0.2)
    state.gate.set()

    assert state.finished.wait(10)
    assert state.ref() == head(env, work)


def test_http_errors_and_advertisement(server: Server) -> None:
    app, _ = server.backend.add_app()
    refs = f"{server.base}/git/{app}.git/info/refs?service=git-receive-pack"
    with httpx.Client() as client:
        anonymous = client.get(refs)
        assert anonymous.status_code == 401
        assert anonymous.headers["www-authenticate"] == 'Basic realm="paas"'
        assert client.get(refs, auth=("u", "nope")).status_code == 401

        advert = client.get(refs, auth=("u", TOKEN))
        assert advert.status_code == 200
        assert advert.headers["content-type"] == "application/x-git-receive-pack-advertisement"
        assert "no-cache" in advert.headers["cache-control"]
        assert advert.content.startswith(b"001f# service=git-receive-pack\n0000")
        caps = advert.content.split(b"\0")[1].split(b"\n")[0].split()
        assert set(caps) == {b"report-status", b"side-band-64k", b"ofs-delta", b"agent=paas"}

        for bad in ("Bad_Name", "x", "a" * 31, "..", "app-does-not-exist"):
            url = f"{server.base}/git/{bad}.git/info/refs?service=git-upload-pack"
            assert client.get(url, auth=("u", TOKEN)).status_code == 404, bad
        dumb = client.get(f"{server.base}/git/{app}.git/info/refs", auth=("u", TOKEN))
        assert dumb.status_code == 403


def test_gzipped_upload_pack_request(server: Server, env: dict[str, str], tmp_path: Path) -> None:
    app, _ = server.backend.add_app()
    work = make_work(env, tmp_path, server.url(app))
    assert git(env, work, "push", "paas", "main").returncode == 0
    want = f"want {head(env, work)} side-band-64k thin-pack ofs-delta\n".encode()
    body = pkt_line(want) + pkt_line(None) + pkt_line(b"done\n")

    response = httpx.post(
        f"{server.base}/git/{app}.git/git-upload-pack",
        content=gzip.compress(body),
        headers={
            "Content-Type": "application/x-git-upload-pack-request",
            "Content-Encoding": "gzip",
        },
        auth=("u", TOKEN),
    )

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-git-upload-pack-result"
    assert response.content.startswith(b"0008NAK\n")
    assert b"PACK" in response.content


def empty_pack() -> bytes:
    header = b"PACK" + struct.pack(">II", 2, 0)
    return header + hashlib.sha1(header).digest()


def report_lines(result: bytes) -> list[str]:
    """The report-status lines inside a side-band-64k receive-pack result."""
    proto = Protocol(BytesIO(result).read, lambda _: None)
    data = b""
    while (packet := proto.read_pkt_line()) is not None:
        if packet[0] == 1:
            data += packet[1:]
    inner = Protocol(BytesIO(data).read, lambda _: None)
    lines = []
    while (line := inner.read_pkt_line()) is not None:
        lines.append(line.decode().rstrip("\n"))
    return lines


def test_receive_pack_refuses_deletes_and_missing_objects(
    server: Server, env: dict[str, str], tmp_path: Path
) -> None:
    app, state = server.backend.add_app()
    work = make_work(env, tmp_path, server.url(app))
    assert git(env, work, "push", "paas", "main").returncode == 0
    current = head(env, work)
    missing = "1" * 40
    commands = [
        f"{ZERO} {missing} refs/heads/master\0report-status side-band-64k\n",
        f"{current} {ZERO} refs/heads/main\n",
    ]
    body = b"".join(pkt_line(c.encode()) for c in commands) + pkt_line(None) + empty_pack()

    response = httpx.post(
        f"{server.base}/git/{app}.git/git-receive-pack",
        content=gzip.compress(body),
        headers={
            "Content-Type": "application/x-git-receive-pack-request",
            "Content-Encoding": "gzip",
        },
        auth=("u", TOKEN),
    )

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-git-receive-pack-result"
    assert report_lines(response.content) == [
        "unpack ok",
        f"ng refs/heads/master missing objects for {missing}",
        "ng refs/heads/main deleting the deployed branch is not allowed",
    ]
    assert state.ref() == current
    assert len(state.deploys) == 1
