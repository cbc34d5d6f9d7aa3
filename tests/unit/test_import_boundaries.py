"""Who loads what: the build worker, the agent and the router run without the ORM, and the
reaper (domain code) without Starlette or the API. Each module is imported in a fresh
interpreter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def loaded(module: str) -> set[str]:
    script = f"import json, sys, {module}; print(json.dumps(sorted(sys.modules)))"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=True, env=env, cwd=ROOT)
    return set(json.loads(done.stdout))


@pytest.mark.parametrize("module", ["paas.builder.tasks", "router.service", "paas.wire",
                                    "paas.runtime.agent", "paas.runtime.agent.__main__",
                                    "paas.scheduler"])
def test_the_worker_the_agent_and_the_router_do_not_load_the_orm(module: str) -> None:
    modules = loaded(module)
    assert "paas.models" not in modules and "sqlalchemy" not in modules


def test_the_reaper_knows_no_http() -> None:
    modules = loaded("paas.reaper")
    assert "starlette" not in modules
    assert not {m for m in modules if m.startswith("paas.api")}
