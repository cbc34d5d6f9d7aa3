"""`python -m paas.roles ROLE...`: several control-plane roles in one process, to pay the
interpreter and the shared clients (httpx, redis-py: ~21 MiB) once instead of once per role.
The roles are this host's node-side ones: `agent`, `router` and `worker` (the build worker).
Each stays runnable on its own (`python -m paas.runtime.agent`, `python -m router`, `python -m
paas.builder.celery_worker`), as a cluster runs an agent and a router on every node.

The worker, if hosted, runs in the main thread (Celery's signal handlers: SIGTERM lets running
builds finish); the others in threads of their own. A role that ends with an error takes the
whole process down at once (exit 70), so that `paas up` restarts every role of it, as it
would restart the role alone: a build that was running is delivered again by the restarted
worker (acks late), dynos and nginx keep running and are adopted."""

from __future__ import annotations

import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable

from paas.settings import Settings, load

ROLES = ("agent", "router", "worker")
# Each role alone (PAAS_ROLES_APART, or a node of a cluster).
ALONE = {"agent": "python -m paas.runtime.agent", "router": "python -m router",
         "worker": "python -m paas.builder.celery_worker"}
HOST = "python -m paas.roles"
CRASHED = 70  # EX_SOFTWARE
JOIN_TIMEOUT = 15.0


def _agent() -> Callable[[Settings, threading.Event], None]:
    from paas.runtime.agent.__main__ import serve
    return serve


def _router() -> Callable[[Settings, threading.Event], None]:
    from router.service import configure_logging, serve
    configure_logging()
    return serve


def _worker() -> Callable[[], int]:
    from paas.builder.celery_worker import serve
    return serve


# A threaded role's loader: imported in the main thread, before any role starts.
THREADED: dict[str, Callable[[], Callable[[Settings, threading.Event], None]]] = {
    "agent": _agent, "router": _router}


def hosted(command: str) -> list[str]:
    """The roles a Procfile command runs: those of `python -m paas.roles ROLE...`, else none."""
    if not command.startswith(HOST + " "):
        return []
    return parse(command.removeprefix(HOST).split())


def split(services: dict[str, str], apart: tuple[str, ...]) -> dict[str, str]:
    """The Procfile's services with the roles `apart` taken out of the hosting services and
    run alone, as services named after them; a host left with no role goes."""
    unknown = sorted(set(apart) - set(ROLES))
    if unknown:
        raise SystemExit(f"PAAS_ROLES_APART: unknown role(s) {', '.join(unknown)} "
                         f"(roles: {', '.join(ROLES)})")
    result: dict[str, str] = {}
    for name, command in services.items():
        roles = hosted(command)
        if not roles or not set(roles) & set(apart):
            result[name] = command
            continue
        if kept := [role for role in roles if role not in apart]:
            result[name] = " ".join([HOST, *kept])
        result.update({role: ALONE[role] for role in roles if role in apart})
    return result


def parse(argv: list[str]) -> list[str]:
    roles = [word for arg in argv for word in arg.replace(",", " ").split()]
    unknown = sorted(set(roles) - set(ROLES))
    if not roles or unknown:
        raise SystemExit(f"usage: python -m paas.roles ROLE... (roles: {', '.join(ROLES)}); "
                         f"unknown: {', '.join(unknown) or 'none given'}")
    return list(dict.fromkeys(roles))


def _run_role(name: str, role: Callable[[Settings, threading.Event], None],
              settings: Settings, stop: threading.Event) -> None:
    try:
        role(settings, stop)
    except BaseException:
        print(f"roles: {name} crashed; stopping its process", file=sys.stderr, flush=True)
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(CRASHED)
    if not stop.is_set():
        print(f"roles: {name} ended on its own; stopping its process", file=sys.stderr,
              flush=True)
        os._exit(CRASHED)


def run(roles: list[str], settings: Settings) -> int:
    stop = threading.Event()
    worker = _worker() if "worker" in roles else None
    threads = [threading.Thread(target=_run_role, name=name, daemon=True,
                                args=(name, THREADED[name](), settings, stop))
               for name in roles if name in THREADED]
    for thread in threads:
        thread.start()
    if worker is not None:
        code = worker()
    else:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        stop.wait()
        code = 0
    stop.set()
    for thread in threads:
        thread.join(JOIN_TIMEOUT)
    return code


def main() -> None:
    roles = parse(sys.argv[1:])
    raise SystemExit(run(roles, load()))


if __name__ == "__main__":
    main()
