"""The router: the control plane of the platform's nginx (the data plane)."""

from __future__ import annotations

import paas  # noqa: F401  first: it keeps httpx's command-line client out (paas/__init__.py)
from router.nginx import Router
from router.service import main

__all__ = ["Router", "main"]
