"""The dyno monitor is a program `make setup` compiles: a checkout without it says so."""

from __future__ import annotations

from pathlib import Path

import pytest

from paas.errors import Unavailable
from paas.runtime import native


def test_a_missing_dyno_monitor_names_the_command_that_builds_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(native, "DYNO_MONITOR", tmp_path / "paas-dyno-monitor")
    with pytest.raises(Unavailable, match="make setup"):
        native.dyno_monitor()


def test_the_built_dyno_monitor_is_found() -> None:
    assert native.dyno_monitor() == str(native.DYNO_MONITOR)
