"""Heroku classic buildpacks: chosen by `.buildpacks` or BUILDPACK_URL, fetched, and their output
split from the app's own files so that it becomes one layer.

A classic buildpack (`bin/detect BUILD_DIR`, `bin/compile BUILD_DIR CACHE_DIR ENV_DIR`,
`bin/release BUILD_DIR`) runs in the build container through the adapter in
`buildpacks/heroku-classic-adapter`, with BUILD_DIR = /app. What it adds to or changes in /app
becomes the `classic` layer; the app's unchanged files stay in the app layer.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

from paas.builder.cnb import (
    BUILTIN_DIR,
    Buildpack,
    BuildpackError,
    Kind,
    load_buildpack,
    read_inside,
)
from paas.runtime.buildnet import BuildNetwork

ADAPTER_DIR = BUILTIN_DIR / "heroku-classic-adapter"
FETCH_TIMEOUT = 120
LAYER_NAME = "classic"
_GIT_URL = re.compile(r"^(https?|git)://[^\s/]+/\S*$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")

Signature = tuple[int, int, int, int, str]


def chosen(app_dir: Path, config_vars: dict[str, str], work: Path, log: Callable[[str], None],
           network: BuildNetwork | None = None) -> list[Buildpack] | None:
    """The buildpacks BUILDPACK_URL (first) or a `.buildpacks` file name; None when neither."""
    url = config_vars.get("BUILDPACK_URL", "").strip()
    if url:
        entries, source = [url], "BUILDPACK_URL"
    elif (app_dir / ".buildpacks").is_file():
        entries, source = _read_list(app_dir), ".buildpacks"
    else:
        return None
    if not entries:
        raise BuildpackError(".buildpacks names no buildpack: put one path or git URL per line")
    log(f"-----> Using the buildpacks named by {source}")
    return [_entry(app_dir, entry, source, work / str(i), log, network)
            for i, entry in enumerate(entries)]


def _read_list(app_dir: Path) -> list[str]:
    lines = read_inside(app_dir, ".buildpacks").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def _entry(app_dir: Path, entry: str, source: str, dest: Path, log: Callable[[str], None],
           network: BuildNetwork | None) -> Buildpack:
    try:
        entry.encode()
    except UnicodeEncodeError:
        raise BuildpackError(f"{source}: buildpack {entry!r} is not valid UTF-8 text; "
                             "name a directory in the repository or a git URL") from None
    if "://" in entry:
        return load_any(fetch(entry, dest, log, network), _name_of(entry))
    return load_any(inside_repo(app_dir, entry, source), _name_of(entry))


def inside_repo(app_dir: Path, entry: str, source: str) -> Path:
    bad = (f"{source}: buildpack {entry!r} must be a directory inside the repository "
           "(like ./buildpacks/mine) or a git URL (https://, http:// or git://)")
    if entry.startswith("/") or "\0" in entry or ".." in Path(entry).parts:
        raise BuildpackError(bad)
    root = app_dir.resolve()
    path = (app_dir / entry).resolve()
    if not path.is_relative_to(root) or path == root:
        raise BuildpackError(bad)
    if not path.is_dir():
        raise BuildpackError(f"{source}: buildpack directory {entry!r} is not in the repository")
    return path


def fetch(url: str, dest: Path, log: Callable[[str], None],
          network: BuildNetwork | None = None) -> Path:
    """A shallow clone of url (`#ref` picks a branch or tag): http(s), and git:// only when
    not confined to a build's network. In the build's network namespace, through its egress
    proxy: the URL is the app's to choose, so it reaches no more than the build could."""
    base, _, ref = url.partition("#")
    if not _GIT_URL.match(base):
        raise BuildpackError(
            f"cannot fetch buildpack {url}: use a git URL with https:// or http://, "
            "or a path inside the repository")
    if network is not None and base.startswith("git://"):
        raise BuildpackError(
            f"cannot fetch buildpack {url}: git:// cannot pass the build's egress proxy; "
            "use the https:// URL of the same repository")
    log(f"       Fetching buildpack {url}")
    command = ["git", "clone", "--quiet", "--depth", "1", *(["--branch", ref] if ref else []),
               "--", base, str(dest)]
    env = {"PATH": "/usr/bin:/bin", "HOME": str(dest.parent), "GIT_TERMINAL_PROMPT": "0",
           "GIT_ALLOW_PROTOCOL": "http:https:git", "GIT_CONFIG_NOSYSTEM": "1"}
    if network is not None:
        command = ["nsenter", f"--net={network.netns_path}", *command]
        env |= network.env
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True,
                              timeout=FETCH_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        raise BuildpackError(f"cannot fetch buildpack {url}: git clone took longer than "
                             f"{FETCH_TIMEOUT} s") from None
    if done.returncode != 0:
        reason = " ".join(done.stderr.split())[-400:] or f"git exited with {done.returncode}"
        raise BuildpackError(f"cannot fetch buildpack {url}: {reason}")
    os.chmod(dest, 0o755)
    return dest


def _name_of(entry: str) -> str:
    name = entry.partition("#")[0].rstrip("/").rsplit("/", 1)[-1].removesuffix(".git")
    return _UNSAFE.sub("-", name).strip("-.") or "buildpack"


def load_any(path: Path, name: str) -> Buildpack:
    """A CNB buildpack (buildpack.toml) or a classic one (bin/compile)."""
    if (path / "buildpack.toml").is_file():
        return load_buildpack(path)
    if not (path / "bin" / "compile").is_file():
        raise BuildpackError(
            f"buildpack {name}: neither a Cloud Native Buildpack (no buildpack.toml) nor a "
            "Heroku classic buildpack (no bin/compile)")
    return Buildpack(id=f"classic/{name}", version="classic", path=path, kind=Kind.CLASSIC)


# ---- release metadata ----------------------------------------------------------------------


def default_process_types(text: str) -> dict[str, str]:
    """`default_process_types` from bin/release's YAML (the flat subset buildpacks print)."""
    processes: dict[str, str] = {}
    inside = False
    for raw in text.splitlines():
        if not raw.strip() or raw.lstrip().startswith("#") or raw.strip() == "---":
            continue
        if not raw[0].isspace():
            inside = raw.split(":", 1)[0].strip() == "default_process_types"
            continue
        name, colon, command = raw.strip().partition(":")
        if inside and colon and command.strip():
            processes[name.strip().strip("'\"")] = _unquote(command.strip())
    return processes


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        inner = value[1:-1]
        return inner.replace("''", "'") if value[0] == "'" else inner.replace('\\"', '"')
    return value


# ---- splitting the classic output from the app -----------------------------------------------


def snapshot(app_dir: Path, exclude: frozenset[str]) -> dict[str, Signature]:
    """What is in app_dir before the classic buildpacks run."""
    found: dict[str, Signature] = {}
    for dirpath, dirnames, filenames in os.walk(app_dir):
        rel_dir = os.path.relpath(dirpath, app_dir)
        if rel_dir == ".":
            dirnames[:] = [d for d in dirnames if d not in exclude]
        for name in dirnames + filenames:
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            if rel_dir == "." and name in exclude:
                continue
            found[rel] = signature(app_dir / rel)
    return found


def signature(path: Path) -> Signature:
    st = path.lstat()
    link = os.readlink(path) if stat.S_ISLNK(st.st_mode) else ""
    if stat.S_ISDIR(st.st_mode):
        return (st.st_mode, 0, 0, 0, "")
    return (st.st_mode, st.st_size, st.st_mtime_ns, st.st_ino, link)


def added_by_buildpacks(before: dict[str, Signature]) -> Callable[[str, Path], bool]:
    """Entries the buildpacks created or changed: the classic layer."""
    return lambda rel, path: before.get(rel) != signature(path)


def from_the_app(before: dict[str, Signature]) -> Callable[[str, Path], bool]:
    """Entries of the commit the buildpacks left alone: the app layer."""
    return lambda rel, path: before.get(rel) == signature(path)
