"""The container runtime: dynos and build containers under runc.

Loaded lazily: the Python monitors of attached one-offs (paas/runtime/piped.py, console.py)
import modules of this package and should not pay for the runtime's imports."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from paas.runtime.containers import (
        BuildContainerSpec,
        DynoSpec,
        DynoStatus,
        RunState,
        Runtime,
    )

__all__ = ["BuildContainerSpec", "DynoSpec", "DynoStatus", "RunState", "Runtime"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from paas.runtime import containers

        return getattr(containers, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
