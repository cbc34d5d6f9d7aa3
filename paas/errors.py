"""The one exception tree of the platform.

    PaasError            500  something the platform could not do
    ├── Malformed        400  a service's message does not match its contract (paas/wire.py)
    ├── Invalid          422  the input is wrong; the message says how to fix it
    │   ├── TooLarge     413  the request body is over the API's limit
    │   └── Permanent    422  a platform setup that retrying cannot fix (a dyno network taken)
    ├── Unauthorized     401  no or a bad token
    ├── Forbidden        403  a valid user who may not do this
    ├── NotFound         404  no such app / build / release
    ├── Conflict         409  the state does not allow it now (name taken, concurrent deploy)
    └── Unavailable      503  a dependency (Redis, runc, nginx) is not answering

The API turns each into JSON `{"id": ..., "message": ...}` with its status; the CLI prints the
message and exits non-zero.
"""

from __future__ import annotations

from paas.redact import redact


class PaasError(Exception):
    status = 500
    id = "error"

    def __init__(self, message: str) -> None:
        message = redact(message)  # what an error says reaches users: no URL credentials
        super().__init__(message)
        self.message = message


class Malformed(PaasError):
    status = 400
    id = "malformed"


class Invalid(PaasError):
    status = 422
    id = "invalid"


class TooLarge(Invalid):
    status = 413
    id = "too_large"


class Permanent(Invalid):
    """The platform cannot do it until its operator changes something: a dyno that meets it
    fails its pending release at once instead of being retried until the release's deadline."""

    id = "permanent"


class Unauthorized(PaasError):
    status = 401
    id = "unauthorized"


class Forbidden(PaasError):
    status = 403
    id = "forbidden"


class NotFound(PaasError):
    status = 404
    id = "not_found"


class Conflict(PaasError):
    status = 409
    id = "conflict"


class Unavailable(PaasError):
    status = 503
    id = "unavailable"
