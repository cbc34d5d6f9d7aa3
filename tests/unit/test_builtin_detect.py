"""The platform's reading of the built-in buildpacks' bin/detect (no container) against the
scripts themselves, run with bash in the same directory."""

from __future__ import annotations

import itertools
import os
import subprocess
from pathlib import Path

import pytest

from paas.builder.cnb import BUILTIN_DETECT, Buildpack, builtin, detect_on_host

NAMES = ("package.json", "requirements.txt", "pyproject.toml", "Pipfile.lock", ".static",
         "index.html", "Procfile")


def script_says(bp: Buildpack, app: Path) -> bool:
    done = subprocess.run(["bash", str(bp.path / "bin" / "detect"), "/platform", "/plan"],
                          cwd=app, capture_output=True, check=False)
    assert done.returncode in (0, 100), done.stderr
    return done.returncode == 0


def layouts() -> list[dict[str, str]]:
    """Every subset of up to three names as files, and some as directories (not `-f`)."""
    found = [{name: "file" for name in combo}
             for size in range(4) for combo in itertools.combinations(NAMES, size)]
    found += [{name: "dir"} for name in NAMES]
    found += [{"index.html": "file", "Procfile": "dir"}, {"requirements.txt": "dir",
                                                          "pyproject.toml": "file"}]
    return found


def make(app: Path, layout: dict[str, str]) -> None:
    app.mkdir()
    for name, kind in layout.items():
        (app / name).mkdir() if kind == "dir" else (app / name).write_text("x")


@pytest.mark.parametrize("bp_id", sorted(BUILTIN_DETECT))
def test_the_platform_answers_as_bin_detect_does(tmp_path: Path, bp_id: str) -> None:
    bp = builtin(bp_id)
    passes = 0
    for n, layout in enumerate(layouts()):
        app = tmp_path / str(n)
        make(app, layout)
        expected = script_says(bp, app)
        passes += expected
        assert detect_on_host(bp, app) is expected, layout
    assert passes  # the matrix has layouts each buildpack detects


@pytest.mark.parametrize("bp_id", sorted(BUILTIN_DETECT))
def test_a_symlink_among_the_names_is_left_to_bin_detect(tmp_path: Path, bp_id: str) -> None:
    app = tmp_path / "app"
    make(app, {"real": "file"})
    for name in NAMES:
        os.symlink("real", app / name)
        assert detect_on_host(builtin(bp_id), app) is None
        (app / name).unlink()
    # positive control: the same app without the symlink is answered on the host
    assert detect_on_host(builtin(bp_id), app) is False


def test_other_buildpacks_run_their_own_detect(tmp_path: Path) -> None:
    app = tmp_path / "app"
    make(app, {"requirements.txt": "file"})
    copy = Buildpack(id="python", version="1", path=tmp_path / "python")
    assert detect_on_host(copy, app) is None
    assert detect_on_host(builtin("python"), app) is True
