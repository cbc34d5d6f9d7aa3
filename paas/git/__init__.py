"""The git receiver: push to deploy, clone what is deployed (smart HTTP)."""

from __future__ import annotations

from paas.git.receiver import GitBackend, PushRejected, RefUpdate, git_routes

__all__ = ["GitBackend", "PushRejected", "RefUpdate", "git_routes"]
