"""Layer metadata a build wrote is read without following links, and bounded."""

from __future__ import annotations

from pathlib import Path

import pytest

from paas import safefs
from paas.builder import layerenv


@pytest.fixture
def layers(tmp_path: Path) -> Path:
    root = tmp_path / "layers"
    (root / "venv" / "env").mkdir(parents=True)
    (root / "venv.toml").write_text("[types]\nlaunch = true\ncache = true\n")
    (root / "venv" / "env" / "GREETING").write_text("hello")
    (tmp_path / "host-file").write_text('[types]\nlaunch = true\n')
    return root


def test_layers_and_their_env(layers: Path) -> None:
    [info] = layerenv.read_layers(layers, "/app/.layers/bp")
    assert (info.name, info.launch, info.cache, info.build) == ("venv", True, True, False)
    env: dict[str, str] = {}
    layerenv.apply_layer(env, info, "launch")
    assert env == {"GREETING": "hello"}


def test_a_linked_layer_toml_is_refused_or_skipped(layers: Path) -> None:
    (layers / "leak.toml").symlink_to(layers.parent / "host-file")
    with pytest.raises(safefs.UnsafePath, match=r"leak\.toml is a symlink"):
        layerenv.read_layers(layers, "")
    assert [i.name for i in layerenv.read_layers(layers, "", strict=False)] == ["venv"]


def test_a_linked_env_file_is_refused_with_its_layer_named(layers: Path) -> None:
    (layers / "venv" / "env" / "LEAK").symlink_to(layers.parent / "host-file")
    [info] = layerenv.read_layers(layers, "")
    with pytest.raises(safefs.UnsafePath, match="venv/env/LEAK is a symlink"):
        layerenv.apply_layer({}, info, "launch")


def test_a_layer_dir_that_is_a_link_is_refused(layers: Path) -> None:
    (layers / "other.toml").write_text("[types]\nlaunch = true\n")
    (layers / "other").symlink_to(layers.parent)
    with pytest.raises(safefs.UnsafePath, match="other is not a directory"):
        layerenv.read_layers(layers, "")


def test_an_oversized_env_file_is_refused(layers: Path) -> None:
    with open(layers / "venv" / "env" / "HUGE", "wb") as f:
        f.truncate(safefs.METADATA_LIMIT + 1)
    [info] = layerenv.read_layers(layers, "")
    with pytest.raises(safefs.UnsafePath, match="larger than"):
        layerenv.apply_layer({}, info, "launch")
