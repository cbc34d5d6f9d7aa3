"""Queueing a build for the build worker from the API without Celery's client: Celery's app
and kombu cost the API ~6 MiB for one call. The message is the one Celery's `send_task` puts
on Redis (task message protocol 2, JSON, kombu's Redis envelope) for the default queue and
the anonymous exchange, so the worker (`paas/builder/tasks.py`, acked late) takes it, and a
worker that dies with it unacked gets it back exactly as one Celery sent
(tests/unit/test_build_queue.py compares the two)."""

from __future__ import annotations

import base64
import json
import os
import socket
import uuid
from typing import Any, Protocol

TASK = "paas.build.tasks.build"
QUEUE = "celery"  # Celery's default queue; on Redis, a list of that name (priority 0)


class Pusher(Protocol):
    def lpush(self, name: str, *values: Any) -> Any: ...


def message(task: str, args: list[Any], task_id: str | None = None) -> dict[str, Any]:
    task_id = task_id or str(uuid.uuid4())
    embed = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
    body = json.dumps([args, {}, embed]).encode()
    return {
        "body": base64.b64encode(body).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {
            "lang": "py", "task": task, "id": task_id, "shadow": None, "eta": None,
            "expires": None, "group": None, "group_index": None, "retries": 0,
            "timelimit": [None, None], "root_id": task_id, "parent_id": None,
            "argsrepr": repr(args), "kwargsrepr": "{}",
            "origin": f"gen{os.getpid()}@{socket.gethostname()}", "ignore_result": None,
            "replaced_task_nesting": 0, "stamped_headers": None, "stamps": {},
        },
        "properties": {
            "correlation_id": task_id, "reply_to": "", "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": QUEUE}, "priority": 0,
            "body_encoding": "base64", "delivery_tag": str(uuid.uuid4()),
        },
    }


def enqueue_build(client: Pusher, build_id: str) -> None:
    client.lpush(QUEUE, json.dumps(message(TASK, [build_id])))
