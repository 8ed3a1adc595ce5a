from __future__ import annotations

import pytest

from shared.clients import NetworkSet, client_address, parse_address
from shared.settings import parse_networks

TRUSTED = NetworkSet(parse_networks("TRUSTED_PROXIES", "127.0.0.1/32,::1/128,10.0.0.0/8"))


@pytest.mark.parametrize(
    ("peer", "xff", "expected"),
    [
        ("203.0.113.9", None, "203.0.113.9"),
        ("203.0.113.9", "127.0.0.1", "203.0.113.9"),  # an untrusted peer's header is ignored
        ("127.0.0.1", None, "127.0.0.1"),
        ("127.0.0.1", "198.51.100.7", "198.51.100.7"),
        ("127.0.0.1", "1.2.3.4, 198.51.100.7", "198.51.100.7"),  # forged left entries ignored
        ("127.0.0.1", "198.51.100.7, 10.1.2.3", "198.51.100.7"),  # through two trusted hops
        ("127.0.0.1", "10.1.2.3", "10.1.2.3"),  # only trusted hops: the leftmost one
        ("::ffff:127.0.0.1", "198.51.100.7", "198.51.100.7"),
        ("::1", "2001:db8::1", "2001:db8::1"),
        ("::1", "2001:DB8:0:0::1", "2001:db8::1"),  # canonical text
        ("127.0.0.1", "[2001:db8::2]", "2001:db8::2"),
        ("127.0.0.1", "garbage", None),  # fail closed
        ("127.0.0.1", "198.51.100.7, not-an-ip", None),
        ("not-an-ip", None, None),
        (None, "198.51.100.7", None),
    ],
)
def test_client_address(peer: str | None, xff: str | None, expected: str | None) -> None:
    assert client_address(peer, xff, TRUSTED) == expected


@pytest.mark.parametrize(
    "text", ["1.2.3", "256.1.1.1", "1.2.3.4.5", "0x7f.1", "::g", "", "203.0.113.7:80", "[1.2.3.4]"]
)
def test_only_plain_addresses_parse(text: str) -> None:
    assert parse_address(text) is None


def test_allowlist_membership() -> None:
    allow = NetworkSet(parse_networks("ADMIN_ALLOWLIST", "203.0.113.0/24,2001:db8::/32"))
    assert allow.contains_text("203.0.113.200")
    assert allow.contains_text("2001:db8::5")
    assert allow.contains_text("::ffff:203.0.113.1")
    assert not allow.contains_text("203.0.114.1")
    assert not allow.contains_text("2001:db9::1")
    assert not allow.contains_text("nonsense")
