from __future__ import annotations

import pytest

from shared.errors import InvalidField
from shared.urls import ascii_url, location_bytes, own_hosts, validate_target_url

OWN = own_hosts("http://localhost:8080")


@pytest.mark.parametrize(
    ("value", "wire"),
    [
        ("https://example.org/menu", "https://example.org/menu"),
        ("HTTPS://Example.ORG/Menu?a=1#top", "HTTPS://Example.ORG/Menu?a=1#top"),
        ("http://example.org", "http://example.org"),
        ("https://example.org:8443/x", "https://example.org:8443/x"),
        ("https://xn--bcher-kva.example/café", "https://xn--bcher-kva.example/caf%C3%A9"),
        ("https://a_b.example/", "https://a_b.example/"),  # browsers take underscores
        ("https://ab--cd.example/", "https://ab--cd.example/"),
        ("https://[2001:DB8::1]/x", "https://[2001:DB8::1]/x"),
        ("https://example.org/a?", "https://example.org/a?"),
        ("https://example.org/?utm_source=print&x=%20y", "https://example.org/?utm_source=print&x=%20y"),
        ("https://localhost:8080/not-a-short-link", "https://localhost:8080/not-a-short-link"),
        ("http://other.example:8080/r/abc", "http://other.example:8080/r/abc"),
        # Not short links: /R/ takes the edge's admin chain (PathPrefix is case-sensitive), and a
        # path that only starts with r is no /r/ path to anyone.
        ("http://localhost:8080/R/abc", "http://localhost:8080/R/abc"),
        ("http://localhost:8080/%52/abc", "http://localhost:8080/%52/abc"),
        ("http://localhost:8080/r%3Fx", "http://localhost:8080/r%3Fx"),
        ("http://localhost:8080/rabc", "http://localhost:8080/rabc"),
        ("http://localhost:8080/x/r/abc", "http://localhost:8080/x/r/abc"),
    ],
)
def test_accepted_ascii_urls_are_stored_as_given_and_sent_as_ascii(value: str, wire: str) -> None:
    assert validate_target_url(value, own=OWN) == value
    assert ascii_url(value) == wire
    assert location_bytes(value) == wire.encode("ascii")


@pytest.mark.parametrize(
    ("value", "stored", "wire"),
    [
        (
            "https://bücher.example/café",
            "https://xn--bcher-kva.example/café",
            "https://xn--bcher-kva.example/caf%C3%A9",
        ),
        (
            "https://Bücher.example:8443/",
            "https://xn--bcher-kva.example:8443/",
            "https://xn--bcher-kva.example:8443/",
        ),
        ("https://faß.de/x", "https://xn--fa-hia.de/x", "https://xn--fa-hia.de/x"),
        (
            "https://\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45\uff0ecom/",
            "https://example.com/",
            "https://example.com/",
        ),  # full-width forms
    ],
)
def test_international_hosts_are_stored_in_ascii(value: str, stored: str, wire: str) -> None:
    assert validate_target_url(value, own=OWN) == stored
    assert validate_target_url(stored, own=OWN) == stored
    assert ascii_url(value) == ascii_url(stored) == wire


@pytest.mark.parametrize(
    "value",
    [
        "javascript:alert(1)",
        "JaVaScRiPt:alert(1)",
        "\tjavascript:alert(1)",
        " https://example.org",
        "https://example.org ",
        "data:text/html,<script>alert(1)</script>",
        "vbscript:msgbox",
        "file:///etc/passwd",
        "ftp://example.org/x",
        "//evil.example/x",
        "/relative/path",
        "example.org",
        "https:example.org",
        "https://",
        "https:///path",
        "https://a.com\\@b.com",
        "https://user@evil.example",
        "https://user:pw@example.org/",
        "https://example.org/a\r\nSet-Cookie: x=1",
        "https://example.org/\x00",
        "https://exa mple.org/",
        "https://example.org/\u202eevil",  # bidi override
        "https://example.org/\u200b",  # zero-width space
        "https://example.org/\ud800",  # lone surrogate
        "https://example.org:99999/",
        "https://example.org:port/",
        "https://-bad-.example/",
        "https://exa_mple..org/",
        "https://[::zz]/",
        "https://" + "a" * 64 + ".example/",
        "https://example.org/" + "a" * 2030,  # 2,049 characters
        "https://example.org/" + "é" * 700,  # short as given, too long once encoded
        # our own short links, under every name and spelling that reaches the edge
        "http://localhost:8080/r/abc",
        "http://LOCALHOST:8080/r/abc",
        "http://localhost.:8080/r/abc",
        "http://127.0.0.1:8080/r/abc",
        "http://127.0.0.2/r/abc",
        "http://[::1]:8080/r/abc",
        "https://localhost:8443/r/abc",
        "http://localhost:8080/./r/abc",
        "http://localhost:8080//r/abc",
        "http://localhost:8080/x/../r/abc",
        "http://localhost:8080/%72/abc",
        "http://localhost:8080/r",
        # ... and every path a decoder on the way may turn into /r/: the redirect service on its
        # own port hears /r%2Fabc as /r/abc (ASGI paths arrive decoded)
        "http://localhost:8080/r%2Fabc",
        "http://localhost:8080/r%2fabc",
        "http://localhost:8001/r%2Fabc",
        "http://localhost:8080/r%252Fabc",
        "http://localhost:8080/r%25252Fabc",
        "http://localhost:8080/%2572/abc",
        "http://localhost:8080/%2Fr%2Fabc",
        "http://localhost:8080/r%5Cabc",
        "http://localhost:8080/x/..%2Fr/abc",
        "http://localhost:8080/x%2F..%2Fr%2Fabc",
        "http://localhost:8080/%2e%2e/r/abc",
        "http://localhost:8080/x/%2E%2E/r/abc",
        "http://localhost:8080/%2E/r/abc",
        "http://localhost:8080///r///abc",
        "http://localhost:8080/r%2F",
        "http://localhost:8080/r%2F?next=1",
        "http://localhost:8080/r%2Fabc#top",
        # loopback in every spelling a browser accepts
        "http://127.1/r/abc",
        "http://2130706433/r/abc",
        "http://0x7f000001/r/abc",
        "http://0177.0.0.1/r/abc",
        "http://[::ffff:127.0.0.1]/r/abc",
        "http://0.0.0.0:8080/r/abc",
        "http://0/r/abc",
        "http://[::]/r/abc",
        "http://a.localhost:8080/r/abc",  # browsers send every *.localhost name to loopback
        "http://Menu.LocalHost.:8080/r/abc",
        "http://[0:0:0:0:0:ffff:7f00:1]/r/abc",
        # hosts no browser would look up
        "https://\u2615.example/",
        "https://[v1.abc]/",
        "https://[::1%25eth0]/",
        "https://xn--zz.example/",
        "",
    ],
)
def test_hostile_urls_are_refused_with_the_field_named(value: str) -> None:
    with pytest.raises(InvalidField) as caught:
        validate_target_url(value, own=OWN)
    assert caught.value.field == "target_url"
    assert caught.value.to_dict()["error"]["details"] == {"field": "target_url"}
    caught.value.message.encode("utf-8")  # always encodable: the answer is JSON


def test_a_public_host_counts_under_any_port() -> None:
    own = own_hosts("https://qr.example.org")
    assert own == frozenset({"qr.example.org"})
    with pytest.raises(InvalidField):
        validate_target_url("http://QR.example.org:8080/r/abc", own=own)
    assert validate_target_url("http://localhost:8080/r/abc", own=own)  # not a loopback base
    assert validate_target_url("https://qr.example.org/menu", own=own)


@pytest.mark.parametrize("value", [None, 42, ["https://example.org"], {"url": "x"}])
def test_non_strings_are_refused(value: object) -> None:
    with pytest.raises(InvalidField):
        validate_target_url(value)


@pytest.mark.parametrize(
    ("stored", "header"),
    [
        ("https://example.org/a\r\nX: y é", b"https://example.org/a%0D%0AX:%20y%20%C3%A9"),
        ("https://exa\u0000mple.org/\ud800", b"https://exa%00mple.org/%ED%A0%80"),
        ("not a url at all", b"not%20a%20url%20at%20all"),
        ("https://[bad/", b"https://[bad/"),
    ],
)
def test_location_bytes_is_safe_for_anything_stored(stored: str, header: bytes) -> None:
    # A row written around the API (psql, an old version) must still not split the response.
    assert location_bytes(stored) == header
