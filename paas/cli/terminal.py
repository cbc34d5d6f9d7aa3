"""`paas run` from a terminal: the local terminal in raw mode, relayed over the API's WebSocket
to the one-off dyno's terminal (protocol in paas/terminals.py)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import termios
import threading
import tty
from collections.abc import Iterator
from contextlib import contextmanager

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.sync.client import ClientConnection, connect

from paas.errors import PaasError, Unavailable

POLL = 0.2


def has_terminal() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()


def websocket_url(api_url: str, path: str) -> str:
    base = api_url.rstrip("/")
    if base.startswith("https://"):
        return "wss://" + base.removeprefix("https://") + path
    return "ws://" + base.removeprefix("http://") + path


def window_size() -> tuple[int, int]:
    """The terminal's own size: not $LINES and $COLUMNS, which a resize does not change (and
    which some parents export, pytest-xdist's workers among them)."""
    try:
        size = os.get_terminal_size(sys.stdin.fileno())
    except OSError:  # stdin is no terminal
        size = shutil.get_terminal_size()
    return size.lines, size.columns


@contextmanager
def raw_mode(fd: int) -> Iterator[None]:
    saved = termios.tcgetattr(fd)
    tty.setraw(fd)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def attach(api_url: str, token: str, app: str, name: str) -> int:
    """Relays the terminal until the dyno exits; returns its exit code."""
    url = websocket_url(api_url, f"/v1/apps/{app}/dynos/{name}/attach")
    try:
        with connect(url, additional_headers={"Authorization": f"Bearer {token}"},
                     open_timeout=30, max_size=None, compression=None) as websocket, \
                raw_mode(sys.stdin.fileno()):
            return _relay(websocket)
    except (OSError, InvalidHandshake, InvalidURI, ConnectionClosed) as error:
        raise Unavailable(f"lost the terminal of {name} ({error}); `paas ps -a {app}` shows "
                          "whether it still runs") from None


def _relay(websocket: ClientConnection) -> int:
    resized = threading.Event()
    previous = signal.signal(signal.SIGWINCH, lambda *_: resized.set())
    threading.Thread(target=_send_keys, args=(websocket,), daemon=True).start()
    try:
        resized.set()
        while True:
            if resized.is_set():
                resized.clear()
                websocket.send(json.dumps({"resize": list(window_size())}))
            try:
                message = websocket.recv(timeout=POLL)
            except TimeoutError:
                continue
            if isinstance(message, bytes):
                os.write(sys.stdout.fileno(), message)
                continue
            control = json.loads(message)
            if "error" in control:
                raise PaasError(control["error"])
            if "exit_code" in control:
                code = control["exit_code"]
                return 1 if code is None else int(code)
    finally:
        signal.signal(signal.SIGWINCH, previous)


def _send_keys(websocket: ClientConnection) -> None:
    fd = sys.stdin.fileno()
    while True:
        try:
            data = os.read(fd, 4096)
        except OSError:
            return
        if not data:
            return
        try:
            websocket.send(data)
        except ConnectionClosed:
            return
