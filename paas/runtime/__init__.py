"""The container runtime: dynos and build containers under runc."""

from __future__ import annotations

from paas.runtime.containers import BuildContainerSpec, DynoSpec, DynoStatus, Runtime

__all__ = ["BuildContainerSpec", "DynoSpec", "DynoStatus", "Runtime"]
