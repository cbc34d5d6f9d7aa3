"""What the git receiver and the platform exchange."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol


@dataclass(frozen=True)
class RefUpdate:
    ref: str  # e.g. "refs/heads/main"
    old: str  # 40-hex, "0" * 40 for create
    new: str  # 40-hex, "0" * 40 for delete
    pusher: str = ""  # who pushed, as authorize() named them


class PushRejected(Exception):
    """Raised by a deploy to refuse the push; str() is shown to the pusher as the reason."""


class GitBackend(Protocol):
    def authorize(self, app: str, password: str | None, write: bool) -> str | None:
        """Who this is (for the release list); raise paas.errors.Unauthorized, Forbidden or
        NotFound to refuse access."""

    def user_for_key(self, key: Any) -> int | None:
        """The id of the user whose SSH public key (an asyncssh.SSHKey) this is, if any."""

    def authorize_user(self, app: str, user_id: int | None, write: bool) -> str | None:
        """As `authorize`, for a user already identified (by an SSH key)."""

    def repo_path(self, app: str) -> Path:
        """The app's existing bare repository."""

    def deploy(self, app: str, update: RefUpdate) -> AsyncIterator[str]:
        """Yield progress lines; raise PushRejected to refuse.

        Returning normally means the backend has already moved the ref (compare-and-swap).
        """
