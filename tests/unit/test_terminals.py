"""The terminal relay's messages (paas/terminals.py): what a client may send, and what the
console monitor and the API make of the streams' entries."""

from __future__ import annotations

from paas import terminals


def test_output_round_trips_any_bytes() -> None:
    data = bytes(range(256)) + "é\r\n".encode()
    assert terminals.entry_bytes(terminals.output_entry(data)) == data
    assert terminals.entry_bytes({b"line": b"runc: exec failed"}) == b"runc: exec failed\r\n"


def test_the_end_carries_the_exit_code() -> None:
    assert terminals.entry_end({"end": "3"}) == (True, 3)
    assert terminals.entry_end({"end": "None"}) == (True, None)
    assert terminals.entry_end({"data": "eA=="}) == (False, None)
    assert terminals.entry_bytes({"end": "0"}) is None


def test_window_sizes_from_clients_are_checked() -> None:
    entry = terminals.resize_entry('{"resize": [33, 101]}')
    assert entry is not None and terminals.parse_input(entry).size == (33, 101)
    for bad in ('{"resize": [0, 80]}', '{"resize": [24]}', '{"resize": ["24", 80]}',
                '{"resize": [24, 100000]}', "not json", '{"other": 1}', "[1, 2]"):
        assert terminals.resize_entry(bad) is None, bad


def test_keys_and_hangups() -> None:
    assert terminals.parse_input(terminals.keys_entry(b"exit 3\r")).data == b"exit 3\r"
    assert terminals.parse_input(terminals.HANGUP_ENTRY).hangup
    attached = terminals.parse_input(terminals.ATTACHED_ENTRY)
    assert not attached.hangup and not attached.data and attached.size is None
