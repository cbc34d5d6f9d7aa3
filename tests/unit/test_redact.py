"""paas.redact: the userinfo of URLs in text, plain or percent-encoded."""

from __future__ import annotations

import time

import pytest

from paas.redact import redact


@pytest.mark.parametrize(("text", "expected"), [
    ("fatal: unable to access 'https://bob:s3cr3t@git.example.com:8443/bp.git/': 403",
     "fatal: unable to access 'https://***@git.example.com:8443/bp.git/': 403"),
    ("Looking in indexes: https://ghp_T0KEN@pypi.example.com/simple",
     "Looking in indexes: https://***@pypi.example.com/simple"),
    ("git+ssh://deploy:pw@host/x and http://a:b@c/ too",
     "git+ssh://***@host/x and http://***@c/ too"),
    ("https://us%40er:p%3Ass@host/", "https://***@host/"),
    ("url=https%3A%2F%2Fbob%3As3cr3t%40host%2Fsimple", "url=https%3A%2F%2F***%40host%2Fsimple"),
    ("HTTPS%3a%2f%2fbob%40host", "HTTPS%3a%2f%2f***%40host"),
    # An '@' inside the password: the userinfo runs to the last '@' before the host.
    ("https://u:t@ok@h/x", "https://***@h/x"),
    ("https%3A%2F%2Fu%3At%40ok%40h%2Fx", "https%3A%2F%2F***%40h%2Fx"),
    # Quotes and angle brackets inside the userinfo.
    ('https://u"x:t\'o<k>@h/', "https://***@h/"),
    ('https%3A%2F%2Fu"x%3Atok%40h', "https%3A%2F%2F***%40h"),
    # JSON-escaped slashes, as in an API error body or a JSON log line.
    ('{"url": "https:\\/\\/u:tok@h\\/simple"}', '{"url": "https:\\/\\/***@h\\/simple"}'),
    # A scheme glued to a word character before it.
    ("PIP_INDEX_URL_https://u:tok@h/", "PIP_INDEX_URL_https://***@h/"),
])
def test_credentials_go_and_the_host_stays(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize("text", [
    "alice@example.com pushed",
    "https://example.com/path/a@b",
    "https://example.com/search?q=a@b#x@y",
    "git@github.com:owner/repo.git",
    "https%3A%2F%2Fexample.com%2Fa%40b",
    "https:\\/\\/example.com\\/a@b",
    "https://example.com/a@b@c and https://h/?u=x@y",
    "no url at all",
])
def test_text_without_credentials_is_left_alone(text: str) -> None:
    assert redact(text) == text


def test_a_megabyte_without_a_url_is_scanned_in_linear_time() -> None:
    start = time.monotonic()
    for text in ("x" * 1024 * 1024 + "@", "a1" * 512 * 1024 + "@", "a:" * 512 * 1024 + "@"):
        assert redact(text) == text
    assert time.monotonic() - start < 2
