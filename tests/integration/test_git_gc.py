"""App repositories are garbage collected after pushes (`git gc --auto`), without breaking
the ref's compare-and-swap or a push that arrives meanwhile."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from tests.integration.test_git_http import (  # noqa: F401  (fixtures)
    Server,
    commit,
    env,
    git,
    head,
    make_work,
    server,
)


def packs(repo: Path) -> list[Path]:
    return sorted((repo / "objects" / "pack").glob("*.pack"))


def eventually(check: object, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "never happened"
        time.sleep(0.1)


def test_pushes_leave_a_repacked_repository_that_still_clones(
    server: Server, env: dict[str, str], tmp_path: Path  # noqa: F811
) -> None:
    app, state = server.backend.add_app()
    # git's own threshold, lowered: more than 2 packs make `gc --auto` repack.
    subprocess.run(["git", "config", "gc.autoPackLimit", "2"], cwd=state.path, check=True)
    work = make_work(env, tmp_path, server.url(app))
    for n in range(4):
        commit(env, work, f"file{n}.txt", f"content {n}\n" * 50)
        pushed = git(env, work, "push", "paas", "main")
        assert pushed.returncode == 0, pushed.stderr
        assert state.ref() == head(env, work)

    # Each push brought a pack (four); gc after the third packed those into one.
    eventually(lambda: len(packs(state.path)) <= 2)
    fsck = subprocess.run(["git", "fsck", "--strict"], cwd=state.path, capture_output=True,
                          text=True, check=False)
    assert fsck.returncode == 0, fsck.stderr
    # Refs stay loose: the release's compare-and-swap never meets git's ref locks.
    assert (state.path / "refs" / "heads" / "main").read_text().strip() == head(env, work)

    clone = git(env, tmp_path, "clone", "-q", server.url(app), "clone")
    assert clone.returncode == 0, clone.stderr
    assert head(env, tmp_path / "clone") == head(env, work)

    commit(env, work, "after.txt", "after gc\n")
    again = git(env, work, "push", "paas", "main")
    assert again.returncode == 0, again.stderr
    assert state.ref() == head(env, work)
