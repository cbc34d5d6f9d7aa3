"""The router's pure logic: domain names, certificate checks, route table lines, figures."""

from __future__ import annotations

import pytest

from paas import certs, domains, metrics
from paas.errors import Invalid
from router.nginx import Peer, Route, format_routes, parse_routes
from router.service import LogShipper, changed_apps, parse_datagram
from tests.tls import make_cert


@pytest.mark.parametrize("name", ["www.example.com", "*.example.com", "A.B.Example.COM.",
                                  "xn--bcher-kva.example", "a-b.c0.io"])
def test_valid_domains_are_normalized(name: str) -> None:
    assert domains.normalize(name, "localhost") == name.lower().rstrip(".")


@pytest.mark.parametrize("name", ["", "example", "a..b.com", "-a.example.com", "a_b.example.com",
                                  "www.*.example.com", "*.com", "1.2.3.4", "has space.com",
                                  "x" * 64 + ".com", "app.localhost", "localhost"])
def test_invalid_domains_are_refused(name: str) -> None:
    with pytest.raises(Invalid):
        domains.normalize(name, "localhost")


@pytest.mark.parametrize("name", [
    "apps.example.com", "APPS.example.com.", "web.apps.example.com", "*.apps.example.com",
    "*.x.apps.example.com", "*.example.com", "*.com"])
def test_the_platforms_domain_its_names_and_wildcards_over_it_are_refused(name: str) -> None:
    with pytest.raises(Invalid, match=r"the platform's own domain apps\.example\.com"):
        domains.normalize(name, "apps.example.com")


@pytest.mark.parametrize("name", ["*.com", "*.io", "*.co.uk", "*.com.au", "*.ac.jp",
                                  "*.org.uk"])
def test_a_wildcard_over_a_public_suffix_is_refused(name: str) -> None:
    with pytest.raises(Invalid, match="which anyone may register under"):
        domains.normalize(name, "localhost")


@pytest.mark.parametrize("name", [
    "example.com", "www.example.com", "*.shop.example.com", "*.other.com", "*.bbc.co.uk",
    "*.example.uk", "*.example.io", "co.uk", "*.xapps.example.com", "apps.example.com.au"])
def test_names_beside_the_platforms_domain_are_anyones(name: str) -> None:
    assert domains.normalize(name, "apps.example.com") == name


def test_wildcards_cover_any_depth_but_not_the_apex() -> None:
    assert domains.covers("*.example.com", "www.example.com")
    assert domains.covers("*.example.com", "a.b.example.com")
    assert not domains.covers("*.example.com", "example.com")
    assert not domains.covers("*.example.com", "badexample.com")
    assert domains.covers("www.example.com", "www.example.com")


def test_certificate_checks() -> None:
    cert, key = make_cert("www.example.com", "*.shop.example.com")
    parsed = certs.parse(cert, key)
    assert parsed.hostnames == ["*.shop.example.com", "www.example.com"]
    _, other_key = make_cert("www.example.com")
    with pytest.raises(Invalid, match="does not match the key"):
        certs.parse(cert, other_key)
    with pytest.raises(Invalid, match="expired"):
        certs.parse(*make_cert("www.example.com", days=-1))
    with pytest.raises(Invalid, match="not a PEM certificate"):
        certs.parse("hello", key)
    with pytest.raises(Invalid, match="private key"):
        certs.parse(cert, "hello")


def test_route_table_lines_round_trip() -> None:
    routes = {"app.localhost": Route("app", "up", (Peer("10.1.2.3:5000", "web.1"),
                                                   Peer("10.1.2.4:5000", "web.2"))),
              "*.example.com": Route("app", "maintenance"), "idle.localhost": Route("idle", "idle")}
    text = format_routes(routes)
    assert "app.localhost app up 10.1.2.3:5000/web.1 10.1.2.4:5000/web.2\n" in text
    assert parse_routes(text) == routes


def test_syslog_datagrams_become_app_lines() -> None:
    data = b'<190>Nov 28 22:10:00 paas: shop at=info method=GET path="/" status=200\n'
    assert parse_datagram(data) == ("shop", 'at=info method=GET path="/" status=200')
    assert parse_datagram(b"<190>Nov 28 22:10:00 other: x") is None


def test_figures_percentiles_and_status_classes() -> None:
    shipper = LogShipper(client=None, log_lines=10)  # type: ignore[arg-type]
    for ms in (1, 2, 3, 5, 8, 40, 40, 40, 90, 900):
        shipper.add("shop", f"at=info method=GET dyno=web.1 connect=0ms service={ms}ms "
                    "status=200 bytes=5 protocol=http")
    shipper.add("shop", 'at=error code=H12 desc="Request timeout" method=GET connect=0ms '
                "service=30000ms status=503 bytes=5 protocol=http")
    (counts,) = shipper.aggregator.counts.values()
    assert counts["requests"] == 11 and counts["2xx"] == 10 and counts["5xx"] == 1
    assert counts["code:H12"] == 1
    assert metrics.bucket(40) == metrics.BUCKETS.index(50)
    histogram = {int(k[1:]): v for k, v in counts.items() if k.startswith("b")}
    from collections import Counter

    assert metrics._percentile(Counter(histogram), 11, 0.5) == 50
    assert metrics._percentile(Counter(histogram), 11, 0.95) == 30000


def test_the_apps_a_route_table_changes_are_those_added_removed_or_routed_anew() -> None:
    old = {"a.test": Route("a", "up", (Peer("10.0.0.2:5000", "web.1"),)),
           "b.test": Route("b"), "gone.test": Route("gone")}
    new = {"a.test": Route("a", "up", (Peer("10.0.0.3:5000", "web.1"),)),
           "b.test": Route("b"), "c.test": Route("c")}

    assert changed_apps(old, new) == ("a", "c", "gone")
    assert changed_apps(new, new) == ()
