"""Who loads what: the build worker, the agent and the router run without the ORM, and the
reaper (domain code) without Starlette or the API; the platform's long-running processes hold
no command-line toolkit (each costs megabytes in every process). Each module is imported in a
fresh interpreter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def loaded(module: str, then: str = "") -> set[str]:
    # A None entry is a module kept out (paas/__init__.py), not one loaded.
    script = (f"import json, sys, {module}; {then + '; ' if then else ''}"
              "print(json.dumps(sorted(k for k, v in sys.modules.items() if v is not None)))")
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


# What `python -m paas.roles agent router worker` (the `node` service) loads before it runs.
NODE_ROLES = "paas.roles._agent(), paas.roles._router(), paas.roles._worker()"


def test_the_node_process_hosting_the_agent_router_and_worker_does_not_load_the_orm() -> None:
    modules = loaded("paas.roles", NODE_ROLES)
    assert {"paas.runtime.agent.reconcile", "router.service", "paas.builder.tasks"} <= modules
    assert "paas.models" not in modules and "sqlalchemy" not in modules
    assert not {m for m in modules if m.startswith("paas.api")}


def test_the_node_process_loads_no_command_line_toolkit() -> None:
    assert not CLI_TOOLKITS & {m.split(".")[0] for m in loaded("paas.roles", NODE_ROLES)}


def test_the_reaper_knows_no_http() -> None:
    modules = loaded("paas.reaper")
    assert "starlette" not in modules
    assert not {m for m in modules if m.startswith("paas.api")}


# What the command lines of httpx (rich) and Celery (click_repl, prompt_toolkit, pygments)
# load beyond click, which Celery itself needs.
CLI_TOOLKITS = {"rich", "pygments", "prompt_toolkit", "click_repl"}
SERVICES = ["paas.supervisor", "paas.api.server", "paas.builder.celery_worker",
            "paas.runtime.agent.__main__", "router"]


@pytest.mark.parametrize("module", SERVICES)
def test_the_platforms_processes_load_no_command_line_toolkit(module: str) -> None:
    assert not CLI_TOOLKITS & {m.split(".")[0] for m in loaded(module)}


def test_paas_up_stays_up_as_a_supervisor_without_clients() -> None:
    modules = {m.split(".")[0] for m in loaded("paas.supervisor")}
    assert not {"httpx", "redis", "sqlalchemy", "celery", "ssl", "email"} & modules
    assert "paas.runtime" not in loaded("paas.supervisor")  # `paas up` set the firewall up


def test_the_api_loads_the_dashboards_templates_at_its_first_page() -> None:
    assert "jinja2" not in loaded("paas.api.server")


def test_the_api_loads_asyncssh_and_cryptography_at_their_first_use() -> None:
    """asyncssh at the first SSH client or key added; cryptography's code (x509, its native
    library) at the first certificate; redis-py imports only the top-level package."""
    modules = loaded("paas.api.server")
    assert "asyncssh" not in {m.split(".")[0] for m in modules}
    assert not {m for m in modules if m.startswith(("cryptography.x509", "cryptography.hazmat"))}


def test_the_api_queues_builds_without_celerys_client() -> None:
    assert not {"celery", "kombu"} & {m.split(".")[0] for m in loaded("paas.api.server")}
