"""Pushed objects: checked as git's `transfer.fsckObjects` would, in a quarantine directory,
and moved into the app's repository only once the whole push is sound.

C git's `index-pack --strict --fix-thin` reads the pack: it streams it to disk (the receiver's
memory stays bounded whatever the pack's size; dulwich's `add_thin_pack` holds a thin pack's
objects in memory), resolves thin-pack deltas against the repository, and runs git's own fsck
on every object (malformed objects, links to objects that exist nowhere, `.git` paths in trees
including their HFS/NTFS spellings, dangerous `.gitmodules`). The quarantine is an object
directory of its own with the repository as its alternate, as git's receive-pack does it: a
rejected push is deleted whole, and the repository never sees one of its objects.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import tempfile
from dataclasses import dataclass
from pathlib import Path

from paas.git.protocol import ByteStream
from paas.git_helpers import first_to_go, git_env

STDERR_LIMIT = 16 << 10
CHUNK_SIZE = 1 << 16
GC_TIMEOUT = 900.0
# index-pack hashes a blob over this size as it streams by instead of inflating it whole.
BIG_FILE_THRESHOLD = "1m"


class PackRejected(Exception):
    """The pack was refused; str() says why (shown as `unpack <reason>`)."""


class PackTooLarge(PackRejected):
    pass


@dataclass
class Quarantine:
    repo: Path
    path: Path

    @classmethod
    def create(cls, repo: Path) -> Quarantine:
        path = Path(tempfile.mkdtemp(prefix="incoming-", dir=repo / "objects"))
        (path / "pack").mkdir()
        return cls(repo, path)

    def env(self) -> dict[str, str]:
        return git_env(self.repo, self.path)

    async def missing(self, shas: list[str]) -> set[str]:
        """Those of `shas` that are not commits here (in the quarantine or the repository)."""
        out = await run_git(["cat-file", "--batch-check=%(objectname) %(objecttype)"],
                            self.env(), "".join(f"{s}\n" for s in shas).encode())
        commits = {line.split()[0] for line in out.decode().splitlines()
                   if line.endswith(" commit")}
        return set(shas) - commits

    def migrate(self) -> None:
        """Moves the checked packs into the repository: each .idx last, as git does, so a
        reader never finds an index without its pack."""
        target = self.repo / "objects" / "pack"
        target.mkdir(exist_ok=True)
        files = sorted((self.path / "pack").iterdir(), key=lambda p: p.suffix == ".idx")
        for file in files:
            if file.name.startswith("tmp_"):
                continue
            destination = target / file.name
            if destination.exists():  # the same pack, pushed twice: content-addressed
                continue
            os.replace(file, destination)
        self.discard()

    def discard(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


async def receive_pack(repo: Path, stream: ByteStream, limit: int) -> Quarantine:
    """Reads the pack from `stream` into a new quarantine; raises PackRejected (the quarantine
    is gone then) or PackTooLarge as soon as more than `limit` bytes were read."""
    quarantine = Quarantine.create(repo)
    try:
        await _index_pack(quarantine, stream, limit)
    except BaseException:
        quarantine.discard()
        raise
    return quarantine


async def _index_pack(quarantine: Quarantine, stream: ByteStream, limit: int) -> None:
    start = stream.received
    proc = await asyncio.create_subprocess_exec(
        "git", "-c", f"core.bigFileThreshold={BIG_FILE_THRESHOLD}",
        "index-pack", "--stdin", "--strict", "--fix-thin",
        f"--max-input-size={limit + 1}",
        cwd=quarantine.repo, env=quarantine.env(), stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    assert proc.stdin is not None and proc.stderr is not None
    first_to_go(proc.pid)
    feeder = asyncio.create_task(_feed(proc, stream, start, limit))
    errors = asyncio.create_task(_read_bounded(proc.stderr))
    try:
        # index-pack exits once the pack is complete, or at its first error
        done, _ = await asyncio.wait({feeder, asyncio.ensure_future(proc.wait())},
                                     return_when=asyncio.FIRST_COMPLETED)
        if feeder in done and feeder.exception() is not None:
            raise feeder.exception()  # type: ignore[misc]
        code = await proc.wait()
    finally:
        feeder.cancel()
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
    if code != 0:
        stderr = await errors
        if b"exceeds maximum allowed size" in stderr:  # index-pack's own count was first
            raise PackTooLarge(too_large(limit))
        if code == -signal.SIGKILL:  # the OOM killer, in the API's memory cgroup
            raise PackRejected("the pack needs more memory to unpack than the git receiver "
                               "may use (PAAS_API_MEMORY_MB)")
        raise PackRejected(_reason(stderr))
    errors.cancel()


async def _feed(proc: asyncio.subprocess.Process, stream: ByteStream, start: int,
                limit: int) -> None:
    assert proc.stdin is not None
    while chunk := await stream.read_some():
        if stream.received - start > limit:
            raise PackTooLarge(too_large(limit))
        try:
            proc.stdin.write(chunk)
            await proc.stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            return  # index-pack stopped reading: its exit status says why
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        proc.stdin.close()


def too_large(limit: int) -> str:
    return f"push rejected: it is larger than the limit of {limit} bytes"


async def _read_bounded(reader: asyncio.StreamReader) -> bytes:
    kept = b""
    while chunk := await reader.read(CHUNK_SIZE):
        kept = (kept + chunk)[:STDERR_LIMIT]
    return kept



def _reason(stderr: bytes) -> str:
    """git's own words for the refusal: its error lines, without `fatal:` noise."""
    lines = [line.strip() for line in stderr.decode(errors="replace").splitlines()]
    errors = [line.removeprefix("error: ") for line in lines if line.startswith("error: ")]
    fatals = [line.removeprefix("fatal: ") for line in lines if line.startswith("fatal: ")]
    picked = errors[:3] or fatals[:1] or ["index-pack failed"]
    return "; ".join(picked)


async def run_git(args: list[str], env: dict[str, str], stdin: bytes = b"") -> bytes:
    proc = await asyncio.create_subprocess_exec(
        "git", *args, env=env, cwd=env["GIT_DIR"], stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    out, _ = await proc.communicate(stdin)
    return out


async def is_ancestor(repo: Path, ancestor: str, descendant: str) -> bool:
    proc = await asyncio.create_subprocess_exec(
        "git", "merge-base", "--is-ancestor", ancestor, descendant, env=git_env(repo),
        cwd=repo, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    return await proc.wait() == 0


async def current(repo: Path, ref: str) -> str | None:
    out = await run_git(["rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"],
                        git_env(repo))
    return out.decode().strip() or None


async def gc_auto(repo: Path) -> bool:
    """`git gc --auto`: repacks once pushes left enough packs or loose objects (git's own
    thresholds, `gc.auto` and `gc.autoPackLimit` in the repository's config). Safe beside a
    push receiving into its quarantine (repack deletes only the packs it read; a pushed pack
    not yet referenced is kept: its objects are younger than the prune expiry). In the
    foreground (gc.autoDetach off), so the caller knows when it ended. Nothing that takes a
    ref's lock file (pack-refs, reflog expiry): the release's compare-and-swap (dulwich) fails
    on a taken lock instead of waiting. Returns whether git succeeded."""
    proc = await asyncio.create_subprocess_exec(
        "git", "-c", "gc.autoDetach=false", "-c", "gc.packRefs=false",
        "-c", "gc.reflogExpire=never", "-c", "gc.reflogExpireUnreachable=never",
        "gc", "--auto", "--quiet", env=git_env(repo), cwd=repo, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    try:
        return await asyncio.wait_for(proc.wait(), GC_TIMEOUT) == 0
    except TimeoutError:
        return False
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
