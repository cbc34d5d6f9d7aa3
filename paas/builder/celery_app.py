"""The Celery app: Redis broker, acked late. The worker runs builds in threads of one process
(`--pool threads`): a build waits on its build container, so a process per build only cost
memory. Celery enforces no time limit in that pool: each build step has its own deadline
(`PAAS_BUILD_TIMEOUT`, `Runtime.run_build`)."""

from __future__ import annotations

from celery import Celery

from paas.settings import Settings, load


def broker_url(redis_url: str) -> str:
    if redis_url.startswith("unix://"):
        return "redis+socket://" + redis_url.removeprefix("unix://")
    return redis_url


def make_celery(settings: Settings) -> Celery:
    app = Celery("paas", broker=broker_url(settings.redis_url))
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        broker_transport_options={"visibility_timeout": int(settings.build_timeout + 300)},
        imports=["paas.builder.tasks"],
    )
    return app


app = make_celery(load())
