"""Credentials in URLs never leave the platform in its output: `https://user:token@host/...`
(a BUILDPACK_URL, a `.buildpacks` line, a pip index URL) becomes `https://***@host/...` in
build output, build and release errors, the app log and API error messages.

The whole userinfo goes, a user alone too: a token is often passed as the user name
(`https://<token>@host/`). A URL quoted inside another one (`https%3A%2F%2Fuser%3Apass%40host`)
is redacted the same way. The host stays, so the reader can still act on the error."""

from __future__ import annotations

import re
from pathlib import Path

MASK = "***"

# scheme://userinfo@ — the userinfo runs to the LAST '@' before the end of the host ('/', '?',
# '#' or whitespace), so `https://u:t@ok@h` loses all of `u:t@ok`, quotes included. The `//` may
# be JSON-escaped (`:\/\/`). The scheme need not start a word (`URL_https://`), but it does not
# start inside a longer run of scheme characters: that keeps a 1 MB run of letters linear.
_SCHEME = r"(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]*"
_PLAIN = re.compile(rf"(?P<scheme>{_SCHEME}:(?:\\?/){{2}})[^\s/?#]+@")
# The same, percent-encoded once: scheme%3A%2F%2Fuserinfo%40, to the last %40 before an
# encoded '/', '?' or '#'.
_ENCODED = re.compile(
    rf"(?P<scheme>{_SCHEME}%3[Aa]%2[Ff]%2[Ff])"
    r"(?:[^\s/?#%]|%(?!2[Ff]|3[Ff]|23)[0-9A-Fa-f]{2})+%40")


def redact(text: str) -> str:
    """`text` with the userinfo of every URL in it replaced by `***`."""
    if "@" not in text and "%40" not in text:
        return text  # the common case: no URL with credentials, nothing to scan
    text = _PLAIN.sub(lambda m: f"{m['scheme']}{MASK}@", text)
    return _ENCODED.sub(lambda m: f"{m['scheme']}{MASK}%40", text)


# A layer's digest, with its algorithm or as a bare run of 64 hex digits (a directory name).
_DIGEST = re.compile(r"(?:sha256:)?(?<![0-9A-Fa-f])[0-9a-f]{64}(?![0-9A-Fa-f])")


def neutral(text: str, home: Path) -> str:
    """A platform error as its users may read it: the platform's home directory becomes
    `$PAAS_HOME` and every layer digest `<layer>` (they tell where the platform keeps what,
    and which layers other apps share)."""
    for prefix in sorted({str(home), str(home.resolve())}, key=len, reverse=True):
        if prefix != "/":
            text = re.sub(re.escape(prefix) + r"(?![^/\s'\":;,)\]])", "$PAAS_HOME", text)
    return _DIGEST.sub("<layer>", text)
