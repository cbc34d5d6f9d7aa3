"""The monitor of a one-off dyno with a terminal (`paas run` from a terminal), as podman's
conmon is for its containers.

runc can hand a container's pseudo-terminal only to a detached container's caller, over a unix
socket (`--console-socket`, the master's fd in an SCM_RIGHTS message). This process receives
it, becomes the container's reaper (PR_SET_CHILD_SUBREAPER: runc exits once the container
runs, and its init is re-parented here), and relays the terminal through Redis: what the
terminal prints goes to the one-off's run stream, what the user types (and window sizes)
comes from its input stream. It outlives the agent that started it; when the container ends
it writes the exit status where the dyno's native monitor would, so the agent sees no
difference.

Usage (by Runtime): python -m paas.runtime.console DYNO_DIR RUNC ROOT OUTPUT_STREAM
INPUT_STREAM, with the Redis URL in $PAAS_CONSOLE_REDIS.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from pathlib import Path

import redis

from paas import outputlines, redis_clients, safefs, streams, terminals
from paas.runtime.monitor import write_exit_code

PR_SET_CHILD_SUBREAPER = 36
# One run stream entry (of 20,000 kept) at most: terminal output is split, never cut, so
# nothing the user's terminal shows is lost, and Redis holds at most ~20,000 x 10 KB.
READ_SIZE = outputlines.LINE_LIMIT * 3 // 4  # base64 makes 4 bytes of 3
INPUT_BLOCK_MS = 1000
# Nobody attached in this long (the client went away before it connected): hang up.
ATTACH_TIMEOUT = 120.0
# After a hangup, a container whose processes ignore it is killed after this long.
HANGUP_GRACE = 5.0


def set_window(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def exit_status(status: int) -> int:
    """As a shell reports it: the exit code, or 128 + the signal that killed it."""
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


class Console:
    def __init__(self, dyno_dir: Path, runc: list[str], output: str, input_: str,
                 client: redis.Redis) -> None:
        self.dir, self.runc = dyno_dir, runc
        self.output, self.input = streams.run_stream_at(output), streams.input_stream_at(input_)
        self.redis = client
        self.master = -1
        self.lock = threading.Lock()
        self.hangup = threading.Event()
        self.attached = threading.Event()

    # ---- starting ----------------------------------------------------------------------

    def start(self) -> tuple[int | None, int]:
        """Starts the container; returns (its init pid, runc's exit code)."""
        sock_dir = Path(tempfile.mkdtemp(prefix="paas-console-"))
        path = sock_dir / "sock"
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(str(path))
            listener.listen(1)
            listener.settimeout(60)
            # runc's own messages; the terminal's output goes to Redis.
            log = safefs.open_append(self.dir, "output.log")
            try:
                runc = subprocess.Popen(
                    [*self.runc, "run", "--detach", "--console-socket", str(path),
                     "--pid-file", str(self.dir / "init.pid"), "--bundle", str(self.dir),
                     self.dir.name],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=log)
            finally:
                os.close(log)
            self._receive_master(listener, runc)
            code = runc.wait()
        finally:
            listener.close()
            path.unlink(missing_ok=True)
            sock_dir.rmdir()
        try:
            return int(safefs.read_file(self.dir, "init.pid") or b""), code
        except (OSError, ValueError, safefs.UnsafePath):
            return None, code or 1

    def _receive_master(self, listener: socket.socket, runc: subprocess.Popen[bytes]) -> None:
        while runc.poll() is None:
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            with connection:
                _, fds, _, _ = socket.recv_fds(connection, 4096, 1)
            if fds:
                self.master = fds[0]
                set_window(self.master, 24, 80)
            return

    # ---- relaying ----------------------------------------------------------------------

    def relay_output(self) -> None:
        """The terminal's output to the run stream, until no process holds the terminal."""
        while True:
            if self.hangup.is_set():
                self._close_master()
                return
            ready, _, _ = select.select([self.master], [], [], 0.25)
            if not ready:
                continue
            try:
                data = os.read(self.master, READ_SIZE)
            except OSError:  # EIO: every process holding the terminal is gone
                data = b""
            if not data:
                return
            streams.add(self.redis, self.output, streams.TerminalOutput(data))

    def relay_input(self) -> None:
        """Keys, window sizes and hangups from the input stream to the terminal."""
        deadline = time.monotonic() + ATTACH_TIMEOUT
        for item in streams.follow_sync(self.redis, self.input, block_ms=INPUT_BLOCK_MS):
            if self.hangup.is_set():
                return
            if item is not None:
                self._apply(item[1])
            elif not self.attached.is_set() and time.monotonic() > deadline:
                self.hang_up()

    def _apply(self, message: streams.InputEntry) -> None:
        self.attached.set()
        if isinstance(message, streams.Hangup):
            self.hang_up()
            return
        with self.lock:
            if self.master < 0:
                return
            try:
                if isinstance(message, streams.WindowSize):
                    set_window(self.master, message.rows, message.cols)
                elif isinstance(message, streams.Keys) and message.data:
                    os.write(self.master, message.data)
            except OSError:
                pass

    def hang_up(self) -> None:
        """The user went away: the terminal hangs up (its readers see the end of input)."""
        self.hangup.set()
        threading.Timer(HANGUP_GRACE, self._kill).start()

    def _kill(self) -> None:
        subprocess.run([*self.runc, "kill", "--all", self.dir.name, "KILL"],
                       capture_output=True, check=False)

    def _close_master(self) -> None:
        with self.lock:
            if self.master >= 0:
                os.close(self.master)
                self.master = -1

    # ---- the end -----------------------------------------------------------------------

    def wait(self, init: int) -> int:
        """Reaps re-parented processes until the container's init exits."""
        while True:
            try:
                pid, status = os.waitpid(-1, 0)
            except ChildProcessError:
                return terminals.LOST
            if pid == init:
                return exit_status(status)

    def finish(self, code: int) -> None:
        write_exit_code(self.dir, code)


def run(dyno_dir: Path, runc: list[str], output: str, input_: str) -> None:
    safefs.write_atomic(dyno_dir, "monitor.pid", str(os.getpid()).encode(), mode=0o644)
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    client = redis_clients.client(os.environ["PAAS_CONSOLE_REDIS"], block=INPUT_BLOCK_MS / 1000,
                                  decode_responses=True)
    console = Console(dyno_dir, runc, output, input_, client)
    init, code = console.start()
    if init is None or console.master < 0:
        console.finish(code or 1)
        return
    reader = threading.Thread(target=console.relay_output, daemon=True)
    reader.start()
    threading.Thread(target=console.relay_input, daemon=True).start()
    code = console.wait(init)
    reader.join(timeout=10)  # the last output first, then the exit status
    console.hangup.set()
    console.finish(code)
    os._exit(0)  # the timers and the input thread have nothing left to do


if __name__ == "__main__":
    run(Path(sys.argv[1]), [sys.argv[2], "--root", sys.argv[3]], sys.argv[4], sys.argv[5])
