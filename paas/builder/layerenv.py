"""Environments from Cloud Native Buildpacks layers (Buildpack API 0.10 subset).

A layer contributes `bin/` to PATH, `lib/` to LD_LIBRARY_PATH (launch) or LIBRARY_PATH (build),
and the files of `env/` plus `env.launch/` or `env.build/`: `NAME` or `NAME.override` sets,
`NAME.default` sets when unset, `NAME.prepend` / `NAME.append` join with `NAME.delim` (no
delimiter without one).
"""

from __future__ import annotations

import stat
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from paas import safefs

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


def read_layers(host_layers: Path, container_layers: str, *,
                strict: bool = True) -> list[LayerInfo]:
    """The layers a buildpack declared in <layers>/<name>.toml, sorted by name.

    The build wrote host_layers: a symlink or special file where a toml or a layer should be
    raises UnsafePath (strict), or is left out (not strict: cleaning up after a build).
    """
    found = []
    for file_name in safefs.list_dir(host_layers):
        if not file_name.endswith(".toml") or file_name in _NOT_LAYERS:
            continue
        name = file_name.removesuffix(".toml")
        try:
            types = _layer_types(host_layers, file_name, name)
        except safefs.UnsafePath:
            if strict:
                raise
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


def _layer_types(host_layers: Path, file_name: str, name: str) -> dict:
    types = load_toml(host_layers, file_name).get("types", {})
    st = safefs.lstat(host_layers, name)
    if st is not None and not stat.S_ISDIR(st.st_mode):
        raise safefs.UnsafePath(name, "is not a directory (a symlink or a file)")
    # unreadable, like invalid TOML: not a layer to keep
    return types if isinstance(types, dict) else {}


def load_toml(directory: Path, rel: str) -> dict:
    """A TOML file the build wrote: {} when missing or invalid; UnsafePath when not plain."""
    data = safefs.read_file(directory, rel)
    if data is None:
        return {}
    try:
        return tomllib.loads(data.decode(errors="replace"))
    except tomllib.TOMLDecodeError:
        return {}


def apply_layer(env: dict[str, str], layer: LayerInfo, phase: Phase) -> None:
    """Apply one layer's contribution to env (in place), for the launch or build phase."""
    try:
        _apply_layer(env, layer, phase)
    except safefs.UnsafePath as err:
        raise safefs.UnsafePath(f"{layer.name}/{err.rel}", err.reason) from None


def _apply_layer(env: dict[str, str], layer: LayerInfo, phase: Phase) -> None:
    if _dir_or_link(layer.host_dir, "bin"):
        _prepend(env, "PATH", f"{layer.container_dir}/bin", ":")
    if _dir_or_link(layer.host_dir, "lib"):
        lib_var = "LD_LIBRARY_PATH" if phase == "launch" else "LIBRARY_PATH"
        _prepend(env, lib_var, f"{layer.container_dir}/lib", ":")
    for sub in ("env", f"env.{phase}"):
        apply_env_dir(env, layer.host_dir, sub)


def _dir_or_link(layer_dir: Path, name: str) -> bool:
    """Judged without following a link: the container resolves it in its own view."""
    st = safefs.lstat(layer_dir, name)
    return st is not None and (stat.S_ISDIR(st.st_mode) or stat.S_ISLNK(st.st_mode))


def apply_env_dir(env: dict[str, str], layer_dir: Path, sub: str) -> None:
    """The env files in layer_dir/sub; a symlink or special file there raises UnsafePath."""
    for file_name in safefs.list_dir(layer_dir, sub):
        name, _, action = file_name.partition(".")
        if action == "delim" or not name:
            continue
        value = _env_file(layer_dir, f"{sub}/{file_name}")
        delim = _env_file(layer_dir, f"{sub}/{name}.delim")
        if action in ("", "override"):
            env[name] = value
        elif action == "default":
            env.setdefault(name, value)
        elif action == "prepend":
            _prepend(env, name, value, delim)
        elif action == "append":
            env[name] = f"{env[name]}{delim}{value}" if env.get(name) else value


def _env_file(layer_dir: Path, rel: str) -> str:
    data = safefs.read_file(layer_dir, rel)
    return "" if data is None else data.decode(errors="replace")


def _prepend(env: dict[str, str], name: str, value: str, delim: str) -> None:
    env[name] = f"{value}{delim}{env[name]}" if env.get(name) else value
