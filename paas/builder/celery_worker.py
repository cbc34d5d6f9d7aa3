"""`python -m paas.builder.celery_worker`: the build worker, Celery's worker started without
Celery's command line, which loads click's plugins, click_repl, prompt_toolkit and pygments
(~9 MiB) for commands a build worker never runs. Builds run in two threads of this one
process (`paas/builder/celery_app.py`). `serve` is the role, which `python -m paas.roles`
hosts beside the agent and the router."""

from __future__ import annotations

from celery.utils.nodenames import default_nodename, host_format

from paas.builder import tasks  # the task, and what the worker does when it is ready

CONCURRENCY = 2


def serve() -> int:
    """Runs the worker in the main thread until SIGTERM (warm: running builds finish), SIGINT
    or SIGQUIT, Celery's own handlers; its exit code. Output is left as it is (no redirection
    of stdout to Celery's logger), so roles hosted beside it print as they do alone."""
    worker = tasks.celery_app.Worker(
        hostname=host_format(default_nodename("worker@%h")), pool_cls="threads",
        concurrency=CONCURRENCY, loglevel="WARNING", quiet=True, no_color=True,
        without_gossip=True, without_mingle=True, redirect_stdouts=False)
    worker.start()
    return int(worker.exitcode or 0)


def main() -> None:
    raise SystemExit(serve())


if __name__ == "__main__":
    main()
