"""The monitor of a dyno (one process each, detached, in a session of its own): runs `runc run`
in the foreground with the container's stdout and stderr on a pipe, copies that output into
the dyno's log through a bounded writer (paas/runtime/dynolog.py: at most the unshipped bound
on disk, the rest dropped and counted), and writes runc's exit status to the exit-code file
once the last output is in the log. So a dyno outlives the process that started it. (runc
itself hands the container pipes of its own and copies them to the monitor's.)

Usage (by Runtime): python -m paas.runtime.monitor DYNO_DIR RUNC ROOT UNSHIPPED_MAX_BYTES
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from paas.runtime import files
from paas.runtime.dynolog import DynoLog, LogWriter, pump


def exit_status(code: int) -> int:
    """As a shell reports it: the exit code, or 128 + the signal that killed it."""
    return 128 - code if code < 0 else code


def write_exit_code(dyno_dir: Path, code: int) -> None:
    files.write_atomic(dyno_dir / "exit-code", f"{code}\n", mode=0o644)


def start_logged(dyno_dir: Path, runc: list[str], unshipped_max: int,
                 stdin: int) -> tuple[subprocess.Popen[bytes], int, LogWriter]:
    """`runc run` of the dyno, its output on a pipe: (runc, the pipe's read end, the writer)."""
    files.write_atomic(dyno_dir / "monitor.pid", str(os.getpid()), mode=0o644)
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


def run(dyno_dir: Path, runc: list[str], unshipped_max: int) -> None:
    for signum in (signal.SIGHUP, signal.SIGINT):
        signal.signal(signum, signal.SIG_IGN)
    process, read_end, writer = start_logged(dyno_dir, runc, unshipped_max, subprocess.DEVNULL)
    finish(process, read_end, writer, dyno_dir)


if __name__ == "__main__":
    run(Path(sys.argv[1]), [sys.argv[2], "--root", sys.argv[3]], int(sys.argv[4]))
