"""The router: the control plane of the platform's nginx (the data plane)."""

from __future__ import annotations

from router.nginx import Router
from router.service import main

__all__ = ["Router", "main"]
