"""Path limits of a pushed tree: what `git ls-tree` lists is refused past Linux's PATH_MAX
and NAME_MAX, and a record is never gathered past MAX_RECORD bytes."""

from __future__ import annotations

import io

import pytest

from paas import sourcetree
from paas.sourcetree import MAX_NAME, MAX_PATH, MAX_RECORD, SourceTooLarge, check_path


def records(data: bytes) -> list[bytes]:
    return list(sourcetree._records(io.BufferedReader(io.BytesIO(data))))


def test_records_split_on_nul_across_chunks() -> None:
    names = [b"a" * 200 + bytes([65 + i % 26]) for i in range(1000)]
    assert records(b"\0".join(names) + b"\0") == names
    assert records(b"x\0y") == [b"x", b"y"]


def test_a_record_over_the_limit_is_refused_before_it_ends() -> None:
    endless = b"100644 blob 0123 5\t" + b"n" * (50 * 1024 * 1024)
    with pytest.raises(SourceTooLarge, match=f"longer than {MAX_PATH} bytes: nnnn"):
        records(endless)
    records(b"m" * MAX_RECORD + b"\0")


def test_path_and_name_limits() -> None:
    check_path(b"/".join([b"d" * MAX_NAME] * 16))
    with pytest.raises(SourceTooLarge, match=f"a path in the pushed tree is longer than "
                                             f"{MAX_PATH} bytes"):
        check_path(b"/".join([b"d" * 200] * 21))
    with pytest.raises(SourceTooLarge, match=f"name in the pushed tree is longer than "
                                             f"{MAX_NAME} bytes: ccc"):
        check_path(b"a/" + b"c" * (MAX_NAME + 1) + b"/b")
