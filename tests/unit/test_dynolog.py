"""What of a dyno's output the agent ships, and when (pure logic)."""

from __future__ import annotations

from paas.runtime.dynolog import complete

LIMIT = 1024


def test_only_whole_lines_are_shipped_while_the_dyno_runs() -> None:
    assert complete(b"one\ntwo\nthr", final=False, limit=LIMIT) == b"one\ntwo\n"
    assert complete(b"partial", final=False, limit=LIMIT) == b""


def test_the_end_of_a_dyno_ships_its_unfinished_last_line() -> None:
    assert complete(b"one\ntwo", final=True, limit=LIMIT) == b"one\ntwo"


def test_a_line_longer_than_a_read_is_shipped_rather_than_stalling_the_log() -> None:
    # Without a newline in a whole read, waiting for one would ship nothing ever again.
    long_line = b"x" * LIMIT
    assert complete(long_line, final=False, limit=LIMIT) == long_line
