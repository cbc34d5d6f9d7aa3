"""Buildpack descriptors, the default detection order and an app's own `project.toml` choice."""

from __future__ import annotations

import re
import stat
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path

from paas import safefs

BUILTIN_DIR = Path(__file__).resolve().parents[2] / "buildpacks"
# Each group: buildpack ids in order; a trailing "?" marks an optional one (it runs when it
# detects, and the group still builds when it does not).
DEFAULT_ORDER: list[list[str]] = [["nodejs?", "python"], ["nodejs"], ["static"], ["procfile"]]
WHAT_THEY_DETECT = {
    "nodejs": "a package.json",
    "python": "a requirements.txt, pyproject.toml or Pipfile.lock",
    "static": "an index.html (without a Procfile) or a .static file",
    "procfile": "a Procfile",
}
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,99}$")
# The built-in buildpacks' bin/detect, as the platform answers it without a container (~50 ms
# each, two of them for every Python push): each takes "is NAME a regular file at the top of
# the workspace" (bash's `-f`). bin/detect stays the reference (a unit test holds the two
# together) and runs whenever a name is a symlink, which only it may follow.
BUILTIN_DETECT: dict[str, Callable[[Callable[[str], bool]], bool]] = {
    "nodejs": lambda f: f("package.json"),
    "python": lambda f: f("requirements.txt") or f("pyproject.toml") or f("Pipfile.lock"),
    "static": lambda f: f(".static") or (f("index.html") and not f("Procfile")),
    "procfile": lambda f: f("Procfile"),
}
_DETECT_NAMES = ("package.json", "requirements.txt", "pyproject.toml", "Pipfile.lock",
                 ".static", "index.html", "Procfile")


class BuildpackError(Exception):
    """A buildpack or a project.toml that cannot be used; the message says how to fix it."""


class Kind(StrEnum):
    CNB = "cnb"
    CLASSIC = "classic"  # a Heroku classic buildpack, run through the adapter


@dataclass(frozen=True)
class Buildpack:
    id: str
    version: str
    path: Path
    kind: Kind = Kind.CNB
    optional: bool = False

    @property
    def dirname(self) -> str:
        """The buildpack's directory name under /app/.layers and /cnb/buildpacks."""
        return self.id.replace("/", "_")

    @property
    def label(self) -> str:
        return f"{self.id} {self.version}"


def load_buildpack(path: Path) -> Buildpack:
    if not (path / "buildpack.toml").is_file():
        raise BuildpackError(f"{path.name}: no buildpack.toml; a buildpack needs one")
    try:
        data = tomllib.loads(read_inside(path, "buildpack.toml"))
    except tomllib.TOMLDecodeError as err:
        raise BuildpackError(f"{path.name}/buildpack.toml is not valid TOML: {err}") from None
    info = data.get("buildpack", {})
    bp_id, version = info.get("id"), info.get("version", "0.0.0")
    if not isinstance(bp_id, str) or not _ID.match(bp_id) or ".." in bp_id or bp_id == "app":
        raise BuildpackError(
            f"{path.name}/buildpack.toml: [buildpack] id must be like 'acme/python' "
            f"(letters, digits, '.', '_', '-', '/'), got {bp_id!r}"
        )
    for script in ("detect", "build"):
        if not (path / "bin" / script).is_file():
            raise BuildpackError(f"buildpack {bp_id}: bin/{script} is missing")
    return Buildpack(id=bp_id, version=str(version), path=path)


def builtin(bp_id: str, root: Path = BUILTIN_DIR) -> Buildpack:
    return load_buildpack(root / bp_id)


def detect_on_host(bp: Buildpack, app_dir: Path) -> bool | None:
    """A built-in buildpack's detect result read from the workspace's top level (no symlink
    followed); None when its bin/detect must run (another buildpack, or a symlink among the
    names it looks at)."""
    rule = BUILTIN_DETECT.get(bp.id)
    if rule is None or bp.kind != Kind.CNB or bp.path != BUILTIN_DIR / bp.id:
        return None
    kinds = {name: safefs.lstat(app_dir, name) for name in _DETECT_NAMES}
    if any(st is not None and stat.S_ISLNK(st.st_mode) for st in kinds.values()):
        return None
    return rule(lambda name: (st := kinds[name]) is not None and stat.S_ISREG(st.st_mode))


def default_order(root: Path = BUILTIN_DIR) -> list[list[Buildpack]]:
    return [[_order_entry(entry, root) for entry in group] for group in DEFAULT_ORDER]


def _order_entry(entry: str, root: Path) -> Buildpack:
    bp = builtin(entry.removesuffix("?"), root)
    return replace(bp, optional=True) if entry.endswith("?") else bp


def project_buildpacks(app_dir: Path, root: Path = BUILTIN_DIR) -> list[Buildpack] | None:
    """The buildpacks an app's project.toml asks for, in order; None when it names none."""
    project = app_dir / "project.toml"
    if not project.is_file() and not project.is_symlink():
        return None
    text = read_inside(app_dir, "project.toml")
    try:
        build = tomllib.loads(text).get("build", {})
    except tomllib.TOMLDecodeError as err:
        raise BuildpackError(f"project.toml is not valid TOML: {err}") from None
    entries = build.get("buildpacks", []) if isinstance(build, dict) else None
    if not isinstance(entries, list):
        raise BuildpackError("project.toml: [build] must be a table whose buildpacks is a list "
                             'of [[build.buildpacks]] tables (uri = "./path" or id = "...")')
    if not entries:
        return None
    return [_project_entry(app_dir, entry, root) for entry in entries]


def _project_entry(app_dir: Path, entry: object, root: Path) -> Buildpack:
    if not isinstance(entry, dict):
        raise BuildpackError("project.toml: each [[build.buildpacks]] needs a uri or an id")
    if "uri" in entry:
        return load_buildpack(_local_uri(app_dir, str(entry["uri"])))
    bp_id = entry.get("id")
    if isinstance(bp_id, str) and bp_id in WHAT_THEY_DETECT:
        return builtin(bp_id, root)
    raise BuildpackError(
        f'project.toml: unknown buildpack {entry!r}; use uri = "./path/in/repo" or one of '
        f"the built-in ids: {', '.join(sorted(WHAT_THEY_DETECT))}"
    )


def _local_uri(app_dir: Path, uri: str) -> Path:
    bad = (
        f"project.toml: buildpack uri {uri!r} must be a directory inside the repository, "
        'like uri = "./buildpacks/mine"'
    )
    if "://" in uri or uri.startswith("/") or "\0" in uri or ".." in Path(uri).parts:
        raise BuildpackError(bad)
    root = app_dir.resolve()
    path = (app_dir / uri).resolve()
    if not path.is_relative_to(root) or path == root:
        raise BuildpackError(bad)
    if not path.is_dir():
        raise BuildpackError(f"project.toml: buildpack directory {uri!r} is not in the repository")
    return path


def read_inside(app_dir: Path, name: str) -> str:
    """Read app_dir/name, refusing symlinks that lead out of the app (the host is not the app's)."""
    root = app_dir.resolve()
    try:
        path = (app_dir / name).resolve()
    except (RuntimeError, OSError):  # a symlink loop
        raise BuildpackError(f"cannot read {name}: it is a loop of symlinks; make it a file") \
            from None
    if not path.is_relative_to(root):
        raise BuildpackError(f"{name} is a symlink that leaves the repository; make it a file")
    try:
        data = safefs.read_file(root, str(path.relative_to(root)))
    except safefs.UnsafePath as err:
        raise BuildpackError(f"cannot read {name}: it {err.reason}") from None
    except OSError as err:
        raise BuildpackError(f"cannot read {name}: {err.strerror}") from None
    if data is None:
        raise BuildpackError(f"cannot read {name}: it does not exist")
    return data.decode(errors="replace")
