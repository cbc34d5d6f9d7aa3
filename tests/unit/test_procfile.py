from __future__ import annotations

import pytest

from paas.builder.procfile import parse_procfile
from paas.errors import Invalid


def test_types_comments_and_blank_lines() -> None:
    text = (
        "# the processes\n\nweb: gunicorn app:app --bind 0.0.0.0:$PORT\n"
        "  # indented comment\nworker: python worker.py\n"
    )
    assert parse_procfile(text) == {
        "web": "gunicorn app:app --bind 0.0.0.0:$PORT",
        "worker": "python worker.py",
    }


def test_crlf_line_endings() -> None:
    assert parse_procfile("web: python app.py\r\nclock: python clock.py\r\n") == {
        "web": "python app.py",
        "clock": "python clock.py",
    }


def test_colons_inside_the_command_are_kept() -> None:
    assert parse_procfile("release: echo a:b:c") == {"release": "echo a:b:c"}


def test_names_keep_their_case_and_allow_dash_and_underscore() -> None:
    assert parse_procfile("Web_2-x: run") == {"Web_2-x": "run"}


def test_empty_procfile_has_no_types() -> None:
    assert parse_procfile("# nothing here\n\n") == {}


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("web python app.py", "line 1: no colon"),
        ("\nweb:\n", "line 2: process type 'web' has no command"),
        ("we b: run", "invalid process type name"),
        (": run", "invalid process type name"),
        (f"{'a' * 64}: run", "invalid process type name"),
        ("web: a\nweb: b", "line 2: process type 'web' is defined twice"),
    ],
)
def test_bad_lines_name_the_line_and_the_fix(text: str, fragment: str) -> None:
    with pytest.raises(Invalid) as err:
        parse_procfile(text)
    assert fragment in err.value.message


def test_limits() -> None:
    with pytest.raises(Invalid, match="more than 100"):
        parse_procfile("".join(f"p{i}: run\n" for i in range(101)))
    with pytest.raises(Invalid, match="64 KiB"):
        parse_procfile("web: " + "x" * 70000)
