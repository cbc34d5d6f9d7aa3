"""The gate that holds a build of tests/apps/slow-build until the test opens it.

The slow buildpack polls 127.0.0.1:$PAAS_TEST_GATE_PORT. A build's network namespace has
nothing but its own loopback, so the test opens the gate there: a listener in the namespace of
every build of the installation, including builds that start after the gate opened (a build
retried after its worker died)."""

from __future__ import annotations

import contextlib
import random
import socket
import threading
from pathlib import Path

from paas.runtime.buildnet import listen_inside
from paas.runtime.network import NETNS_DIR, build_netns_name, netns_with_prefix
from paas.settings import Settings


class BuildGate:
    def __init__(self, home: Path) -> None:
        self.prefix = build_netns_name(Settings(home=home).install_id, "")
        self.port = random.randrange(20000, 60000)
        self._listeners: dict[str, socket.socket] = {}
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None

    def open(self) -> None:
        self._thread = threading.Thread(target=self._keep_open, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._closed.set()
        if self._thread is not None:
            self._thread.join(10)
        for listener in self._listeners.values():
            listener.close()

    def __enter__(self) -> BuildGate:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _keep_open(self) -> None:
        while not self._closed.wait(0.1):
            for name in netns_with_prefix(self.prefix):
                if name not in self._listeners:
                    try:
                        listener = listen_inside(str(NETNS_DIR / name), self.port)
                    except Exception:  # the build ended meanwhile; its namespace is gone
                        continue
                    listener.setblocking(False)
                    self._listeners[name] = listener
            for listener in self._listeners.values():
                with contextlib.suppress(OSError):
                    listener.accept()[0].close()
