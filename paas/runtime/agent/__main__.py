"""`python -m paas.runtime.agent`: the agent of this host's node, until SIGTERM or SIGINT.
`serve` is the role itself, which `python -m paas.roles` hosts beside others in one process."""

from __future__ import annotations

import signal
import sys
import threading
import traceback

import redis

from paas import notify, redis_clients, scheduler
from paas.client import ApiClient
from paas.errors import PaasError
from paas.logs import RedisEvents
from paas.runtime import Runtime
from paas.runtime.agent.node import watch_firewall
from paas.runtime.agent.reconcile import Agent
from paas.settings import Settings, load
from paas.slugs.layers import LayerStore
from paas.stopping import wake_on


def main() -> None:
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    serve(load(), stop)


def serve(settings: Settings, stop: threading.Event) -> None:
    """The agent until `stop` is set."""
    runtime = Runtime(settings)
    events = RedisEvents(redis_clients.client(settings.redis_url, decode_responses=True),
                         settings.log_lines)
    agent = Agent(settings, runtime, LayerStore(settings), events)
    wake_on(stop, agent.wake)
    api = ApiClient(settings.api_url, settings.service_token_path.read_text().strip())
    firewall = threading.Thread(target=watch_firewall, args=(runtime, stop), name="firewall",
                                daemon=True)
    firewall.start()
    # What the API wants changed, and each route table the router applies (a retiring dyno
    # waits for one), wake the loop at once; the interval stays the fallback.
    threading.Thread(target=notify.listen, name="notifications", daemon=True, args=(
        settings.redis_url, (notify.DESIRED_CHANNEL, notify.APPLIED_CHANNEL), agent.wake,
        stop)).start()
    try:
        scheduler.run(agent, scheduler.ApiControlPlane(api), stop, settings.agent_interval,
                      on_error=print_error, wake=agent.wake)
    finally:
        agent.shutdown()
        firewall.join(5)


def print_error(error: BaseException) -> None:
    if isinstance(error, PaasError | redis.RedisError | OSError):
        print(f"agent: {error}", file=sys.stderr, flush=True)
    else:  # e.g. a runc call timing out on a loaded machine: the whole story, and try again
        traceback.print_exception(error)


if __name__ == "__main__":
    main()
