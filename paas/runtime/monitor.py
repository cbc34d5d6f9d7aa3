"""What the Python monitors of attached one-offs share (piped.py, console.py): `runc run` in
the foreground with the container's stdout and stderr on a pipe, that output copied into the
dyno's log through a bounded writer (paas/runtime/dynolog.py: at most the unshipped bound on
disk, the rest dropped and counted), and runc's exit status written to the exit-code file once
the last output is in the log. A dyno without a terminal or an attached stdin has the native
monitor instead (paas/runtime/native/dyno-monitor.c: the same files, the same bounds, and no
`runc` left running).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from paas import safefs
from paas.runtime.dynolog import DynoLog, LogWriter, pump


def exit_status(code: int) -> int:
    """As a shell reports it: the exit code, or 128 + the signal that killed it."""
    return 128 - code if code < 0 else code


def write_exit_code(dyno_dir: Path, code: int) -> None:
    safefs.write_atomic(dyno_dir, "exit-code", f"{code}\n".encode(), mode=0o644)


def start_logged(dyno_dir: Path, runc: list[str], unshipped_max: int,
                 stdin: int) -> tuple[subprocess.Popen[bytes], int, LogWriter]:
    """`runc run` of the dyno, its output on a pipe: (runc, the pipe's read end, the writer)."""
    safefs.write_atomic(dyno_dir, "monitor.pid", str(os.getpid()).encode(), mode=0o644)
    writer = LogWriter(DynoLog(dyno_dir / "output.log"), unshipped_max)
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    try:
        # --keep: the exited container (and its cgroup, with its OOM-kill count) stays until
        # removed.
        process = subprocess.Popen(
            [*runc, "run", "--keep", "--bundle", str(dyno_dir), dyno_dir.name],
            stdin=stdin, stdout=write_end, stderr=write_end)
    finally:
        os.close(write_end)
    return process, read_end, writer


def finish(process: subprocess.Popen[bytes], read_end: int, writer: LogWriter,
           dyno_dir: Path) -> None:
    """The output until its end, then runc's exit status."""
    try:
        pump(read_end, writer)
    finally:
        writer.close()
        os.close(read_end)
        write_exit_code(dyno_dir, exit_status(process.wait()))
