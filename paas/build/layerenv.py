"""Environments from Cloud Native Buildpacks layers (Buildpack API 0.10 subset).

A layer contributes `bin/` to PATH, `lib/` to LD_LIBRARY_PATH (launch) or LIBRARY_PATH (build),
and the files of `env/` plus `env.launch/` or `env.build/`: `NAME` or `NAME.override` sets,
`NAME.default` sets when unset, `NAME.prepend` / `NAME.append` join with `NAME.delim` (no
delimiter without one).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

STACK_PATH = "/usr/local/bin:/usr/bin:/bin"
_NOT_LAYERS = {"launch.toml", "build.toml", "store.toml"}

Phase = Literal["launch", "build"]


@dataclass(frozen=True)
class LayerInfo:
    name: str
    host_dir: Path
    container_dir: str
    launch: bool
    build: bool
    cache: bool


def read_layers(host_layers: Path, container_layers: str) -> list[LayerInfo]:
    """The layers a buildpack declared in <layers>/<name>.toml, sorted by name."""
    found = []
    for toml_path in sorted(host_layers.glob("*.toml")):
        if toml_path.name in _NOT_LAYERS or not _plain_file(toml_path):
            continue
        types = _load_toml(toml_path).get("types", {})
        if not isinstance(types, dict):  # unreadable, like invalid TOML: not a layer to keep
            types = {}
        name = toml_path.name.removesuffix(".toml")
        if (host_layers / name).is_symlink():
            continue
        found.append(
            LayerInfo(
                name=name,
                host_dir=host_layers / name,
                container_dir=f"{container_layers}/{name}",
                launch=types.get("launch") is True,
                build=types.get("build") is True,
                cache=types.get("cache") is True,
            )
        )
    return found


def _plain_file(path: Path) -> bool:
    """A regular file, not a symlink: the build may have planted links to host files."""
    return path.is_file() and not path.is_symlink()


def _load_toml(path: Path) -> dict:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError):
        return {}


def apply_layer(env: dict[str, str], layer: LayerInfo, phase: Phase) -> None:
    """Apply one layer's contribution to env (in place), for the launch or build phase."""
    if (layer.host_dir / "bin").is_dir():
        _prepend(env, "PATH", f"{layer.container_dir}/bin", ":")
    if (layer.host_dir / "lib").is_dir():
        lib_var = "LD_LIBRARY_PATH" if phase == "launch" else "LIBRARY_PATH"
        _prepend(env, lib_var, f"{layer.container_dir}/lib", ":")
    for sub in ("env", f"env.{phase}"):
        apply_env_dir(env, layer.host_dir / sub)


def apply_env_dir(env: dict[str, str], env_dir: Path) -> None:
    if not env_dir.is_dir() or env_dir.is_symlink():
        return
    for path in sorted(env_dir.iterdir()):
        if not _plain_file(path):
            continue
        name, _, action = path.name.partition(".")
        if action == "delim" or not name:
            continue
        value = path.read_text(errors="replace")
        delim = _delim(env_dir, name)
        if action in ("", "override"):
            env[name] = value
        elif action == "default":
            env.setdefault(name, value)
        elif action == "prepend":
            _prepend(env, name, value, delim)
        elif action == "append":
            env[name] = f"{env[name]}{delim}{value}" if env.get(name) else value


def _delim(env_dir: Path, name: str) -> str:
    path = env_dir / f"{name}.delim"
    return path.read_text() if _plain_file(path) else ""


def _prepend(env: dict[str, str], name: str, value: str, delim: str) -> None:
    env[name] = f"{value}{delim}{env[name]}" if env.get(name) else value
