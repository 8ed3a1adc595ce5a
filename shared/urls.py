"""Destination URLs: what the management service accepts, and how the redirect service emits it.

A destination is accepted only when it is an absolute ``http``/``https`` URL with a host, at most
2,048 characters, without control characters, whitespace, backslashes or credentials, and not one
of this service's own short links. Browsers and Python's parser disagree about backslashes, ``@``
and stripped whitespace, so those are refused before parsing rather than interpreted.

An accepted URL is stored as given (an internationalised host stays readable, so that a homograph
is visible to whoever reads it). :func:`ascii_url` gives the form that goes on the wire: the host in
IDNA (punycode), every byte outside printable ASCII percent-encoded, so that no ``Location`` header
can carry a line break or a byte a client would misread.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from urllib.parse import urlsplit

from shared.errors import InvalidField

MAX_URL_LENGTH = 2048
_SCHEMES = ("http", "https")
_LABEL = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)")
_NOT_PRINTABLE_ASCII = re.compile(r"[^\x21-\x7e]")
_UNRESERVED_ESCAPE = re.compile(r"%(2[dDeE]|3[0-9]|[46][1-9a-fA-F]|[57][0-9aA]|5[fF]|7[eE])")
_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


def has_control_characters(text: str) -> bool:
    """Controls, format characters (bidi overrides, zero-width), surrogates or unassigned code points."""
    return any(unicodedata.category(ch)[0] == "C" for ch in text)


def own_hosts(public_base_url: str) -> frozenset[str]:
    """The host names under which this service's short links are reached.

    A loopback base (``localhost``) is reached under every loopback name, so all of them count.
    """
    host = (urlsplit(public_base_url).hostname or "").rstrip(".").lower()
    return _LOOPBACK_NAMES | {host} if _is_loopback(host) else frozenset({host})


def validate_target_url(
    value: object, *, own: frozenset[str] = frozenset(), field: str = "target_url"
) -> str:
    """``value`` itself when it is an acceptable destination, else :class:`InvalidField` naming
    ``field`` and the reason. ``own`` are this service's host names (see :func:`own_hosts`)."""
    if not isinstance(value, str):
        raise InvalidField(field, "must be a string")
    if not value:
        raise InvalidField(field, "must not be empty")
    if len(value) > MAX_URL_LENGTH:
        raise InvalidField(field, f"must be at most {MAX_URL_LENGTH} characters")
    for ch in value:
        # C* are controls, format characters, surrogates and unassigned code points; Z* is every
        # kind of space.
        if ch == "\\" or unicodedata.category(ch)[0] in "CZ":
            raise InvalidField(field, f"must not contain {ch!a}")

    scheme, sep, rest = value.partition(":")
    if not sep or scheme.lower() not in _SCHEMES:
        raise InvalidField(field, "must be an absolute http or https URL")
    if not rest.startswith("//"):
        raise InvalidField(field, "must have a host (scheme://host/...)")
    try:
        parts = urlsplit(value)
        hostname = parts.hostname or ""
    except ValueError:  # e.g. a bracketed host that is no IPv6 address
        raise InvalidField(field, "is not a valid URL") from None
    if "@" in parts.netloc:
        raise InvalidField(field, "must not contain credentials (user@host)")
    try:
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        raise InvalidField(field, "has an invalid port") from None
    host = ascii_host(hostname, field=field)
    if len(ascii_url(value)) > MAX_URL_LENGTH:
        raise InvalidField(field, f"must be at most {MAX_URL_LENGTH} characters once encoded")

    bare = host.rstrip(".")
    is_own = bare in own or (_is_loopback(bare) and bool(own & _LOOPBACK_NAMES))
    routed = _routed_path(parts.path)
    if is_own and (routed == "/r" or routed.startswith("/r/")):
        raise InvalidField(field, "must not point at this service's own short links")
    return value


def ascii_host(hostname: str, *, field: str = "target_url") -> str:
    """The host in ASCII: lower case, IDNA for names, compressed form for IPv6 literals."""
    if not hostname:
        raise InvalidField(field, "must have a host")
    if ":" in hostname:  # urlsplit removed the brackets of an IPv6 literal
        try:
            return str(ipaddress.IPv6Address(hostname))
        except ValueError:
            raise InvalidField(field, "has an invalid IPv6 address") from None
    try:
        host = hostname.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise InvalidField(field, "has an invalid host name") from None
    name = host.removesuffix(".")
    if len(name) > 253 or not all(_LABEL.fullmatch(label) for label in name.split(".")):
        raise InvalidField(field, "has an invalid host name")
    return host


def ascii_url(url: str) -> str:
    """``url`` as it goes on the wire: IDNA host, everything outside printable ASCII percent-encoded.

    Total for any string (a row written around the API included): a host that cannot be encoded is
    left as it is and then percent-encoded with the rest.
    """
    try:
        parts = urlsplit(url)
        hostname = parts.hostname
    except ValueError:
        hostname = None
    start = len(parts.scheme) + 3 if hostname else -1
    if hostname and not hostname.isascii() and url[start : start + len(parts.netloc)] == parts.netloc:
        userinfo, at, hostport = parts.netloc.rpartition("@")
        host, colon, port = hostport.rpartition(":") if hostport.count(":") == 1 else (hostport, "", "")
        try:
            netloc = f"{userinfo}{at}{host.encode('idna').decode('ascii')}{colon}{port}"
            url = url[:start] + netloc + url[start + len(parts.netloc) :]
        except UnicodeError:
            pass  # left for the percent-encoding below
    return _NOT_PRINTABLE_ASCII.sub(
        lambda m: "".join(f"%{b:02X}" for b in m.group().encode("utf-8", "surrogatepass")), url
    )


def location_bytes(url: str) -> bytes:
    """``url`` as a safe ``Location`` header value, whatever was stored in the database."""
    return ascii_url(url).encode("ascii")


def _is_loopback(host: str) -> bool:
    """Whether a browser would connect to this machine for ``host``: loopback names and addresses in
    every spelling a browser accepts (``127.1``, ``0x7f000001``, ``2130706433``, ``::ffff:127.0.0.1``),
    and the unspecified address."""
    if host in _LOOPBACK_NAMES:
        return True
    address: ipaddress.IPv4Address | ipaddress.IPv6Address | None
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = _whatwg_ipv4(host)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address is not None and (address.is_loopback or address.is_unspecified)


def _whatwg_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """An IPv4 host as browsers read it: 1 to 4 parts, each decimal, 0x-hex or 0-octal, the last
    part filling the remaining bytes."""
    parts = host.removesuffix(".").split(".")
    if not 1 <= len(parts) <= 4:
        return None
    numbers = []
    for part in parts:
        try:
            if part.lower().startswith("0x"):
                numbers.append(int(part[2:] or "0", 16))
            elif len(part) > 1 and part.startswith("0"):
                numbers.append(int(part[1:], 8))
            else:
                numbers.append(int(part, 10))
        except ValueError:
            return None
    *head, last = numbers
    if any(n > 255 for n in head) or last >= 256 ** (5 - len(numbers)):
        return None
    value = last
    for index, number in enumerate(head):
        value += number << (8 * (3 - index))
    return ipaddress.IPv4Address(value)


def _routed_path(path: str) -> str:
    """The path as the edge routes it: unreserved escapes decoded, dot segments and ``//`` removed."""
    path = _UNRESERVED_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), path)
    segments: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if segments:
                segments.pop()
        elif segment not in ("", "."):
            segments.append(segment)
    return "/" + "/".join(segments)
