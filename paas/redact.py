"""Credentials in URLs never leave the platform in its output: `https://user:token@host/...`
(a BUILDPACK_URL, a `.buildpacks` line, a pip index URL) becomes `https://***@host/...` in
build output, build and release errors, the app log and API error messages.

The whole userinfo goes, a user alone too: a token is often passed as the user name
(`https://<token>@host/`). A URL quoted inside another one (`https%3A%2F%2Fuser%3Apass%40host`)
is redacted the same way. The host stays, so the reader can still act on the error."""

from __future__ import annotations

import re

MASK = "***"

# scheme://userinfo@ — userinfo has no '/', '?', '#', '@' or whitespace (RFC 3986 3.2.1).
_PLAIN = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)[^\s/?#@'\"<>]+@")
# The same, percent-encoded once: scheme%3A%2F%2Fuserinfo%40, where the userinfo's own escapes
# are anything but an encoded '/', '?', '#' or '@'.
_ENCODED = re.compile(
    r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*%3[Aa]%2[Ff]%2[Ff])"
    r"(?:[^\s/?#@%'\"<>]|%(?!40|2[Ff]|3[Ff]|23)[0-9A-Fa-f]{2})+%40")


def redact(text: str) -> str:
    """`text` with the userinfo of every URL in it replaced by `***`."""
    if "@" not in text and "%40" not in text:
        return text  # the common case: no URL with credentials, nothing to scan
    text = _PLAIN.sub(lambda m: f"{m['scheme']}{MASK}@", text)
    return _ENCODED.sub(lambda m: f"{m['scheme']}{MASK}%40", text)
