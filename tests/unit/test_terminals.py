"""The terminal relay's messages (paas/terminals.py): what a client may send, and what its
terminal shows of a run stream's entries."""

from __future__ import annotations

from paas import terminals
from paas.streams import OutputLine, TerminalOutput, WindowSize


def test_a_terminal_shows_output_bytes_as_they_are_and_lines_with_a_line_end() -> None:
    data = bytes(range(256)) + "é\r\n".encode()
    assert terminals.screen_bytes(TerminalOutput(data)) == data
    assert terminals.screen_bytes(OutputLine("runc: exec failed")) == b"runc: exec failed\r\n"


def test_window_sizes_from_clients_are_checked() -> None:
    assert terminals.window_size('{"resize": [33, 101]}') == WindowSize(33, 101)
    for bad in ('{"resize": [0, 80]}', '{"resize": [24]}', '{"resize": ["24", 80]}',
                '{"resize": [24, 100000]}', "not json", '{"other": 1}', "[1, 2]"):
        assert terminals.window_size(bad) is None, bad
