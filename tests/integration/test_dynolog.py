"""A dyno's output file is bounded while its processes keep appending to it, and every line
is shipped once, in order (a real O_APPEND writer); its monitor's writer keeps at most a bound
not yet shipped, drops the rest and says how much (a real pipe, as a dyno's stdout is)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

from paas.runtime.dynolog import (
    DROPPED,
    KEEP_BYTES,
    MARKER_ROOM,
    READ_SIZE,
    DynoLog,
    LogWriter,
    dropped_count,
    pump,
)

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


def test_output_past_the_unshipped_bound_is_dropped_counted_and_logging_resumes(
        tmp_path: Path) -> None:
    path = tmp_path / "output.log"
    log = DynoLog(path)
    writer = LogWriter(log, 2 * MAX_BYTES)
    line = b"." * 91 + b"\n"
    for _ in range(10000):  # 920 KB while nobody ships
        writer.write(line)
    on_disk = path.stat().st_size
    assert 2 * MAX_BYTES - len(line) <= on_disk <= 2 * MAX_BYTES
    assert writer.dropped == 10000 * len(line) - on_disk

    shipped = ship_all(log, final=False)  # the agent is back: ships, and cuts the head
    assert path.stat().st_size < on_disk
    writer.write(b"after\n")
    writer.write(b"\x00paas:dropped 5\n")  # a dyno cannot forge the marker
    shipped += ship_all(log, final=True)
    writer.close()

    assert shipped[:-3] == [line[:-1]] * (on_disk // len(line))
    marker, after, forged = (part.decode() for part in shipped[-3:])
    assert marker == DROPPED.decode() + str(10000 * len(line) - on_disk)
    assert dropped_count(marker) == 10000 * len(line) - on_disk
    assert after == "after"
    assert dropped_count(forged) is None and forged.endswith("paas:dropped 5")


def test_a_quiet_dyno_gets_its_dropped_count_and_a_cut_line_ends(tmp_path: Path) -> None:
    log = DynoLog(tmp_path / "output.log")
    bound = READ_SIZE + MARKER_ROOM  # the smallest there is
    writer = LogWriter(log, 1000)
    writer.write(b"x" * (bound - 10))  # a line without its end
    writer.write(b"y" * 100)  # past the bound
    writer.quiet()  # no room yet
    assert writer.dropped == 100
    log.set_offset(bound - 10)
    writer.quiet()
    assert (tmp_path / "output.log").read_bytes() == (
        b"x" * (bound - 10) + b"\n" + DROPPED + b"100\n")


def test_every_line_through_a_pipe_arrives_while_the_agent_ships(tmp_path: Path) -> None:
    path = tmp_path / "output.log"
    log = DynoLog(path)
    writer = LogWriter(log, 8 * 1024 * 1024)
    read_end, write_end = os.pipe()
    producer = subprocess.Popen([sys.executable, "-c", WRITER, "/dev/stdout", str(LINES)],
                                stdout=write_end)
    os.close(write_end)
    copier = threading.Thread(target=pump, args=(read_end, writer))
    copier.start()
    shipped: list[bytes] = []
    while copier.is_alive():
        shipped += ship_all(log, final=False)
    copier.join()
    writer.close()
    os.close(read_end)
    assert producer.wait() == 0
    shipped += ship_all(log, final=True)
    assert [line[:11] for line in shipped] == [b"line %06d" % n for n in range(LINES)]
    assert path.stat().st_size <= MAX_BYTES + READ
