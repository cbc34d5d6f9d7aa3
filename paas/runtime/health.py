"""Health checks of a dyno from the host: a TCP accept on $PORT, or app.json's HTTP checks."""

from __future__ import annotations

import http.client
import socket

from paas.wire import HealthCheck

MAX_BODY = 1024 * 1024


def accepts(ip: str, port: int, timeout: float = 2.0) -> bool:
    try:
        with socket.create_connection((ip, port), timeout=timeout):
            return True
    except OSError:
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
