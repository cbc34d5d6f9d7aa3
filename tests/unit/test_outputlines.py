from __future__ import annotations

import io

from paas.outputlines import LINE_LIMIT, READ_LIMIT, cut, read_line


def test_a_short_line_is_kept_whole() -> None:
    assert cut("hello") == "hello"
    assert cut("é" * (LINE_LIMIT // 2)) == "é" * (LINE_LIMIT // 2)  # exactly the limit


def test_a_long_line_keeps_its_head_and_says_how_much_was_cut() -> None:
    assert cut("x" * (LINE_LIMIT + 5)) == "x" * LINE_LIMIT + " [line cut: 5 more bytes]"


def test_a_cut_never_splits_a_character() -> None:
    line = cut("é" * LINE_LIMIT)  # 2 bytes each
    assert line == "é" * (LINE_LIMIT // 2) + f" [line cut: {LINE_LIMIT} more bytes]"


def test_reading_a_line_longer_than_a_read_keeps_its_head_only() -> None:
    long = b"x" * (3 * READ_LIMIT + 7)
    stream = io.BytesIO(long + b"\r\nnext\nlast")
    first = read_line(stream)
    assert first == "x" * LINE_LIMIT + f" [line cut: {len(long) - LINE_LIMIT} more bytes]"
    assert read_line(stream) == "next"
    assert read_line(stream) == "last"
    assert read_line(stream) is None


def test_a_long_line_without_a_newline_until_the_end_is_cut() -> None:
    stream = io.BytesIO(b"y" * (READ_LIMIT * 2))
    dropped = 2 * READ_LIMIT - LINE_LIMIT
    assert read_line(stream) == "y" * LINE_LIMIT + f" [line cut: {dropped} more bytes]"
    assert read_line(stream) is None


def test_a_line_cut_once_is_not_cut_again() -> None:
    once = cut("x" * (LINE_LIMIT + 5000))
    assert cut(once) == once == "x" * LINE_LIMIT + " [line cut: 5000 more bytes]"
