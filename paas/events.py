"""What the domain tells the outside world while it works: deploy progress lines for the
pusher, "the routes changed" for the router, "what the nodes should run changed" for the
agents. Implemented over Redis in paas.logs (the notifications: paas.notify)."""

from __future__ import annotations

from typing import Protocol


class Events(Protocol):
    def deploy_line(self, build_id: str, line: str) -> None: ...

    def deploy_end(self, build_id: str, ok: bool, message: str) -> None: ...

    def routes_changed(self) -> None: ...

    def desired_changed(self) -> None: ...

    def app_log(self, app: str, source: str, line: str) -> None: ...
