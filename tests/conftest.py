"""Test distribution over pytest-xdist workers (`make test`: `-n 3 --dist loadgroup`).

Each test file is one xdist group unless it names its own (`pytest.mark.xdist_group`): a
file's module-scoped platform is started once, on one worker, and its tests run in order.
Every worker has its own session platform, ports and dyno subnets (tests/platform.py shares
PAAS_TEST_PORTS and PAAS_TEST_SUBNETS out between workers) and its own temporary homes, so
host-global names (netns, cgroups, nft tables: the install id is derived from PAAS_HOME)
differ too. Files marked `serial` (memory and load measurements) run after the others, alone.
"""

from __future__ import annotations

import pytest

# Run first: the long end-to-end files, so the short ones fill the workers' last minutes.
_ORDER = {"e2e": 0, "integration": 1, "unit": 2}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(item.path.relative_to(
                config.rootpath).as_posix()))
    items.sort(key=lambda item: _ORDER.get(item.path.parent.name, 1))
