"""A dyno's output file is bounded while its processes keep appending to it, and every line
is shipped once, in order (a real O_APPEND writer, as a dyno's stdout is)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from paas.runtime.dynolog import KEEP_BYTES, DynoLog

MAX_BYTES = 256 * 1024
READ = 64 * 1024
LINES = 30000
WRITER = """
import sys
with open(sys.argv[1], "ab", buffering=0) as out:
    for n in range(int(sys.argv[2])):
        out.write(b"line %06d %s\\n" % (n, b"." * 80))
"""


def ship_all(log: DynoLog, final: bool) -> list[bytes]:
    shipped = []
    while True:
        offset, chunk = log.read(final, READ)
        if not chunk:
            return shipped
        shipped.extend(chunk.splitlines())
        log.set_offset(offset + len(chunk))
        if not final:
            log.bound(MAX_BYTES)


def test_a_growing_log_is_cut_to_its_tail_and_loses_no_line(tmp_path: Path) -> None:
    path = tmp_path / "output.log"
    path.touch()
    log = DynoLog(path)
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(LINES)])
    shipped: list[bytes] = []
    biggest = 0
    while writer.poll() is None:
        shipped += ship_all(log, final=False)
        biggest = max(biggest, path.stat().st_size)
    assert writer.wait() == 0
    shipped += ship_all(log, final=False)
    shipped += ship_all(log, final=True)

    assert [line[:11] for line in shipped] == [b"line %06d" % n for n in range(LINES)]
    # ~2.7 MB were written; what is left is at most the bound and one read, at least the
    # tail kept for crash reports.
    assert biggest < LINES * 92
    assert KEEP_BYTES <= path.stat().st_size <= MAX_BYTES + READ
    assert path.stat().st_blocks * 512 <= MAX_BYTES + READ + 8192
    assert path.read_bytes().endswith(b"line %06d %s\n" % (LINES - 1, b"." * 80))
    assert log.tail(200).endswith(b"." * 80 + b"\n")


def test_a_log_cut_by_someone_else_is_read_from_its_start(tmp_path: Path) -> None:
    path = tmp_path / "output.log"
    path.write_bytes(b"old line\n" * 100)
    log = DynoLog(path)
    log.set_offset(900)
    path.write_bytes(b"new line\n")
    assert log.read(final=False, limit=READ) == (0, b"new line\n")
