"""Lines of user output on their way into Redis: each stream keeps up to 20,000 entries, so
the bytes of one entry are what bounds Redis's memory. A line longer than LINE_LIMIT keeps
its head and says how much was cut. Kept free of imports beyond the standard library."""

from __future__ import annotations

import re
from typing import IO

LINE_LIMIT = 10 * 1024  # bytes of one line kept in a stream entry
READ_LIMIT = 64 * 1024  # bytes read from a pipe in one go, newline or not
_CUT_MARK = re.compile(r" \[line cut: (\d+) more bytes\]\Z")


def cut(line: str, dropped: int = 0, limit: int = LINE_LIMIT) -> str:
    """line, or its first limit bytes marked as cut (dropped: bytes already left out).
    A line cut once already (a producer cut it, the stream writer cuts again) stays as it is."""
    if not dropped and len(line) <= limit // 4:  # UTF-8: at most 4 bytes a character
        return line
    if not dropped and (mark := _CUT_MARK.search(line)):
        line, dropped = line[:mark.start()], int(mark.group(1))
    data = line.encode(errors="replace")
    if len(data) > limit:
        dropped += len(data) - limit
        line = data[:limit].decode(errors="ignore")
    return f"{line} [line cut: {dropped} more bytes]" if dropped else line


def read_line(stream: IO[bytes]) -> str | None:
    """The next line of a pipe as text, cut to LINE_LIMIT bytes; None at the end. Never
    holds more than READ_LIMIT bytes, however long the line."""
    raw = stream.readline(READ_LIMIT)
    if not raw:
        return None
    if raw.endswith(b"\n") or len(raw) < READ_LIMIT:  # a whole line, or the end
        return cut(_text(raw))
    head, dropped = raw[:LINE_LIMIT], len(raw) - LINE_LIMIT
    while rest := stream.readline(READ_LIMIT):
        dropped += len(rest.rstrip(b"\r\n"))
        if rest.endswith(b"\n"):
            break
    return cut(head.decode(errors="ignore"), dropped)


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace").rstrip("\r\n")
