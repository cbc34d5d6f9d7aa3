"""Health checks of a dyno from the host: a TCP accept on $PORT, or app.json's HTTP checks."""

from __future__ import annotations

import http.client
import socket
import threading
import time

from paas.wire import HealthCheck

MAX_BODY = 1024 * 1024
PROBE_EVERY = 0.025  # seconds between two connects while a dyno boots


def accepts(ip: str, port: int, timeout: float = 2.0) -> bool:
    try:
        with socket.create_connection((ip, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_accepting(ip: str, port: int, until: float, cancelled: threading.Event) -> bool:
    """Connects every PROBE_EVERY seconds until the dyno accepts (True), `until` (unix time)
    passes or `cancelled` is set (False). A booting dyno refuses at once: each try is cheap."""
    while not cancelled.is_set():
        left = until - time.time()
        if left <= 0:
            return False
        if accepts(ip, port, timeout=min(0.5, left)):
            return True
        cancelled.wait(PROBE_EVERY)
    return False


def http_check(ip: str, port: int, check: HealthCheck) -> str:
    """GET the check's path on the dyno: "" when it passed, else what went wrong."""
    connection = http.client.HTTPConnection(ip, port, timeout=check.timeout)
    try:
        connection.request("GET", check.path, headers={"Host": "localhost",
                                                          "User-Agent": "paas-healthcheck"})
        response = connection.getresponse()
        body = response.read(MAX_BODY).decode(errors="replace")
    except (OSError, http.client.HTTPException) as error:
        return f"no answer ({type(error).__name__}: {error})".replace(": )", ")")
    finally:
        connection.close()
    if not 200 <= response.status < 400:
        return f"status {response.status}"
    if check.content and check.content not in body:
        return f"the response does not contain {check.content!r}"
    return ""
