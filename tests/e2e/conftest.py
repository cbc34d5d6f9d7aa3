from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.platform import Platform


@pytest.fixture(scope="session")
def platform() -> Iterator[Platform]:
    platform = Platform.create()
    try:
        platform.up()
        yield platform
    finally:
        platform.down()
