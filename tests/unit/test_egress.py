"""The egress proxy's rules and request rewriting, as pure logic."""

from __future__ import annotations

import ipaddress

import pytest

from paas.errors import Invalid
from paas.runtime.egress import Allowed, _upstream_request, parse_allow, refusal

INTERNAL = [ipaddress.ip_network("10.213.0.0/16"), ipaddress.ip_network("192.0.2.7/32")]


@pytest.mark.parametrize("address", [
    "127.0.0.1", "127.8.9.10", "::1", "0.0.0.0", "::", "169.254.169.254", "fe80::1",
    "224.0.0.1", "240.0.0.1", "10.213.4.2", "192.0.2.7", "::ffff:127.0.0.1", "::ffff:10.213.1.2",
])
def test_internal_and_special_addresses_are_refused(address: str) -> None:
    assert refusal(ipaddress.ip_address(address), INTERNAL) is not None


@pytest.mark.parametrize("address", ["93.184.216.34", "10.9.8.7", "192.0.2.8", "2001:db8::1"])
def test_other_addresses_are_allowed(address: str) -> None:
    assert refusal(ipaddress.ip_address(address), INTERNAL) is None


def test_connect_keeps_the_bytes_after_the_head() -> None:
    assert _upstream_request(b"CONNECT", b"example.test:443", b"CONNECT example.test:443 "
                             b"HTTP/1.1\r\nHost: example.test", b"\x16\x03") == (
        "example.test", 443, b"\x16\x03")


def test_plain_http_goes_origin_form_without_proxy_headers_and_closes() -> None:
    head = (b"GET http://example.test:8080/a?b=1 HTTP/1.1\r\nHost: example.test:8080\r\n"
            b"Proxy-Authorization: Basic eA==\r\nProxy-Connection: keep-alive\r\n"
            b"Connection: keep-alive\r\nAccept: */*")
    host, port, first = _upstream_request(b"GET", b"http://example.test:8080/a?b=1", head, b"")
    assert (host, port) == ("example.test", 8080)
    assert first == (b"GET /a?b=1 HTTP/1.1\r\nHost: example.test:8080\r\nAccept: */*\r\n"
                     b"Connection: close\r\n\r\n")


@pytest.mark.parametrize("method,target", [
    (b"CONNECT", b"example.test"), (b"GET", b"/relative"), (b"GET", b"ftp://example.test/"),
])
def test_requests_a_proxy_cannot_serve_are_bad(method: bytes, target: bytes) -> None:
    with pytest.raises(ValueError):
        _upstream_request(method, target, method + b" " + target + b" HTTP/1.1", b"")


def test_the_operators_allow_list_opens_internal_destinations() -> None:
    allowed = parse_allow("10.213.4.2:3141, 192.0.2.0/24 [::1]:8080")
    assert allowed == [Allowed(ipaddress.ip_network("10.213.4.2/32"), 3141),
                       Allowed(ipaddress.ip_network("192.0.2.0/24")),
                       Allowed(ipaddress.ip_network("::1/128"), 8080)]

    def why(address: str, port: int) -> str | None:
        return refusal(ipaddress.ip_address(address), INTERNAL, port, allowed)

    assert why("10.213.4.2", 3141) is None and why("10.213.4.2", 22) is not None
    assert why("192.0.2.7", 1) is None and why("::1", 8080) is None and why("::1", 80)
    assert why("10.213.4.3", 3141) is not None


@pytest.mark.parametrize("entry", ["mirror.test:80", "10.0.0.1:0", "10.0.0.300", "fd00::1",
                                   "10.0.0.1:99999", "10.0.0.0/33"])
def test_a_bad_allow_entry_says_what_is_expected(entry: str) -> None:
    with pytest.raises(Invalid, match=r"PAAS_EGRESS_ALLOW: .* like 10\.1\.2\.3:3141"):
        parse_allow(f"10.0.0.1, {entry}")
