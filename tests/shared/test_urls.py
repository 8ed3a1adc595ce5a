from __future__ import annotations

import pytest

from shared.errors import InvalidField
from shared.urls import location_bytes, origin, validate_target_url

OWN = (origin("http://localhost:8080"),)


@pytest.mark.parametrize(
    ("value", "canonical"),
    [
        ("https://example.org/menu", "https://example.org/menu"),
        ("HTTPS://Example.ORG/Menu?a=1#top", "https://example.org/Menu?a=1#top"),
        ("http://example.org", "http://example.org"),
        ("https://example.org:8443/x", "https://example.org:8443/x"),
        ("https://bücher.example/café", "https://xn--bcher-kva.example/caf%C3%A9"),
        ("https://[2001:DB8::1]/x", "https://[2001:db8::1]/x"),
        ("https://example.org/a?", "https://example.org/a?"),
        ("https://example.org/?utm_source=print&x=%20y", "https://example.org/?utm_source=print&x=%20y"),
        ("https://localhost:8080/not-a-short-link", "https://localhost:8080/not-a-short-link"),
        ("http://localhost:9999/r/abc", "http://localhost:9999/r/abc"),
    ],
)
def test_accepted_urls_are_canonical(value: str, canonical: str) -> None:
    assert validate_target_url(value, own_origins=OWN) == canonical
    # Canonical means: idempotent, and printable ASCII that goes into a header unchanged.
    assert validate_target_url(canonical, own_origins=OWN) == canonical
    assert location_bytes(canonical) == canonical.encode("ascii")


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
        "https://example.org:99999/",
        "https://example.org:port/",
        "https://-bad-.example/",
        "https://exa_mple..org/",
        "https://[::zz]/",
        "https://" + "a" * 64 + ".example/",
        "https://example.org/" + "a" * 2048,
        "http://localhost:8080/r/abc",  # our own short link: a loop
        "http://LOCALHOST:8080/r/abc",
        "",
    ],
)
def test_hostile_urls_are_refused_with_the_field_named(value: str) -> None:
    with pytest.raises(InvalidField) as caught:
        validate_target_url(value, own_origins=OWN)
    assert caught.value.field == "target_url"
    assert caught.value.to_dict()["error"]["details"] == {"field": "target_url"}


@pytest.mark.parametrize("value", [None, 42, ["https://example.org"], {"url": "x"}])
def test_non_strings_are_refused(value: object) -> None:
    with pytest.raises(InvalidField):
        validate_target_url(value)


def test_location_bytes_never_carries_a_line_break() -> None:
    # A row written around the API (psql, an old version) must still not split the response.
    assert location_bytes("https://example.org/a\r\nX: y é") == b"https://example.org/a%0D%0AX:%20y%20%C3%A9"
