"""The router's data plane: what the control loop (`router/service.py`) drives. nginx with a
Lua-held route table today (`router/nginx.py:Router`); another proxy implements the same."""

from __future__ import annotations

from typing import Protocol

from router.nginx import Cert, Challenge, Route


class DataPlane(Protocol):
    certificates: tuple[Cert, ...] | None  # what it serves now; None: not known yet
    reloads: int  # how many times new certificates were applied

    def ensure_running(self, certificates: tuple[Cert, ...] | None = None) -> bool:
        """Running, with `certificates` when given; True when it was (re)started, so its
        route table is empty. Raises ConfigRejected for certificates it refuses."""
        ...

    def running(self) -> bool: ...

    def set_routes(self, routes: dict[str, Route]) -> None:
        """The whole table, by hostname, applied without dropping a connection."""
        ...

    def get_routes(self) -> dict[str, Route]: ...

    def set_challenges(self, challenges: tuple[Challenge, ...]) -> None:
        """The ACME http-01 challenges it answers itself, applied without a reload."""
        ...

    def get_challenges(self) -> tuple[Challenge, ...]: ...

    def stop(self, timeout: float = 15.0) -> None: ...
