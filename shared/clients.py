"""Who is asking: the client address behind the edge.

``X-Forwarded-For`` is believed only when the peer is a trusted proxy, and then only as far as the
trusted hops go: the header is read from the right (the entry our proxy appended) and the first
address that is not itself a trusted proxy is the client. Anything a client wrote further left is
ignored, so a forged header cannot pick the address.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from shared.settings import Network

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_address(value: str) -> Address | None:
    try:
        address = ipaddress.ip_address(value.strip().removeprefix("[").removesuffix("]"))
    except ValueError:
        return None
    # An IPv4 client on a dual-stack socket arrives as ::ffff:a.b.c.d.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def in_networks(address: Address, networks: Sequence[Network]) -> bool:
    return any(address.version == network.version and address in network for network in networks)


def client_address(peer: str | None, forwarded_for: str | None, trusted: Sequence[Network]) -> Address | None:
    """The client's address, or ``None`` when it cannot be told (a malformed forwarded entry)."""
    address = parse_address(peer) if peer else None
    if address is None or forwarded_for is None or not in_networks(address, trusted):
        return address
    for entry in reversed(forwarded_for.split(",")):
        hop = parse_address(entry)
        if hop is None:
            return None  # fail closed: a trusted proxy wrote something we cannot read
        if not in_networks(hop, trusted):
            return hop
        address = hop
    return address
