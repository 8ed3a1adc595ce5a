"""Who is asking: the client address behind the edge.

``X-Forwarded-For`` is believed only when the peer is a trusted proxy, and then only as far as the
trusted hops go: the header is read from the right (the entry our proxy appended) and the first
address that is not itself a trusted proxy is the client. Anything a client wrote further left is
ignored, so a forged header cannot pick the address.

The scan writer resolves an address for every scan, so parsing avoids :mod:`ipaddress` (about ten
times slower than ``inet_pton`` and integer masks here).
"""

from __future__ import annotations

import socket
from collections.abc import Sequence

from shared.settings import Network

# (version, address as an integer)
Parsed = tuple[int, int]
_V4_MAPPED_PREFIX = 0xFFFF << 32


def parse_address(text: str) -> Parsed | None:
    """An IP address in any usual spelling (``[v6]``, IPv4-mapped IPv6 unwrapped), or ``None``."""
    text = text.strip()
    try:
        return 4, int.from_bytes(socket.inet_pton(socket.AF_INET, text))
    except (OSError, ValueError):  # ValueError: an embedded NUL
        pass
    try:
        value = int.from_bytes(socket.inet_pton(socket.AF_INET6, text.removeprefix("[").removesuffix("]")))
    except (OSError, ValueError):
        return None
    if value >> 32 == 0xFFFF:  # ::ffff:a.b.c.d, an IPv4 client on a dual-stack socket
        return 4, value ^ _V4_MAPPED_PREFIX
    return 6, value


def address_text(address: Parsed) -> str:
    version, value = address
    if version == 4:
        return socket.inet_ntop(socket.AF_INET, value.to_bytes(4))
    return socket.inet_ntop(socket.AF_INET6, value.to_bytes(16))


class NetworkSet:
    """CIDRs, checked by integer masks."""

    def __init__(self, networks: Sequence[Network]) -> None:
        self.networks = tuple(networks)
        self._ranges = [(n.version, int(n.network_address), int(n.netmask)) for n in networks]

    def __contains__(self, address: Parsed) -> bool:
        version, value = address
        return any(v == version and value & mask == net for v, net, mask in self._ranges)

    def contains_text(self, text: str) -> bool:
        parsed = parse_address(text)
        return parsed is not None and parsed in self


def client_address(peer: str | None, forwarded_for: str | None, trusted: NetworkSet) -> str | None:
    """The client's address (canonical text), or ``None`` when it cannot be told (no peer, or a
    forwarded entry from a trusted proxy that is not an address: fail closed)."""
    address = parse_address(peer) if peer else None
    if address is None:
        return None
    if forwarded_for is not None and address in trusted:
        for entry in reversed(forwarded_for.split(",")):
            hop = parse_address(entry)
            if hop is None:
                return None
            address = hop
            if hop not in trusted:
                break
    return address_text(address)
