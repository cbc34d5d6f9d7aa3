"""Build containers, build networks and workspaces left behind by a build worker that died
(SIGKILL, OOM, host trouble). A build container is run by `runc run` in the foreground, a
child of the worker process that builds; when that process dies, `runc run` is handed to PID 1
and the container would run on. The worker removes such orphans when it starts and before each
build."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path

from paas.builder import disk
from paas.runtime import Runtime
from paas.runtime.buildnet import remove_stale_build_networks
from paas.settings import Settings

BUILD_PREFIX = "build-"


def _ppid(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def _runners(ids: set[str]) -> dict[str, int]:
    """Container id -> pid of the `runc ... run ... <id>` process that runs it."""
    found: dict[str, int] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        args = [a.decode(errors="replace") for a in argv if a]
        if len(args) > 2 and args[0].endswith("runc") and "run" in args and args[-1] in ids:
            found[args[-1]] = int(proc.name)
    return found


def orphan_builds(runtime: Runtime) -> list[str]:
    """Build containers whose runner is gone or was orphaned (its parent is PID 1)."""
    ids = {cid for cid in runtime.runc.states() if cid.startswith(BUILD_PREFIX)}
    runners = _runners(ids)
    return sorted(cid for cid in ids
                  if cid not in runners or _ppid(runners[cid]) in (None, 0, 1))


def remove_orphans(settings: Settings, log: Callable[[str], None] = lambda _line: None) -> int:
    runtime = Runtime(settings)
    orphans = orphan_builds(runtime)
    for container_id in orphans:
        log(f"removing build container {container_id}: its worker is gone")
        runtime._remove_build(container_id)  # the Runtime's own cleanup of a build container
    remove_stale_build_networks(settings, runtime.install_id)
    _remove_stale_workspaces(settings)
    return len(orphans)


def _remove_stale_workspaces(settings: Settings) -> None:
    """Workspaces (with their disk images, temporary ones too) whose lock no live build holds
    and that are older than a build may live: a dead worker's. A workspace is unmounted first:
    rmtree must not empty a mounted one's contents and leave the loop device."""
    if not settings.builds_dir.is_dir():
        return
    oldest = time.time() - settings.build_timeout - 180
    for path in settings.builds_dir.iterdir():
        try:
            if path.is_symlink() or path.stat().st_mtime >= oldest:
                continue
            with disk.unless_held(_workspace_of(path)) as unused:
                if unused:
                    _remove(path)
        except OSError:
            continue
    _remove_stale_temp_images(settings.home / "cache", oldest)
    disk.detach_unused_loops(settings.home)


def _workspace_of(path: Path) -> Path:
    """build-x for build-x, build-x.img, build-x.lock and .build-x.img.<pid>.tmp."""
    name = path.name
    if name.startswith(".") and name.endswith(".tmp"):
        name = name[1:].rsplit(".", 2)[0]
    return path.with_name(name.removesuffix(".img").removesuffix(".lock"))


def _remove(path: Path) -> None:
    if path.is_dir():
        disk.remove_workspace(path)
    elif path.name.endswith(".tmp") or (path.name.endswith(".img")
                                       and not path.with_suffix("").exists()):
        path.unlink(missing_ok=True)


def _remove_stale_temp_images(cache_root: Path, oldest: float) -> None:
    """A cache image's mkfs is seconds; an old temporary one is a killed worker's."""
    if not cache_root.is_dir():
        return
    for path in cache_root.glob(".*.img.*.tmp"):
        with suppress(OSError):
            if not path.is_symlink() and path.stat().st_mtime < oldest:
                path.unlink()
