"""Destination URLs: what the management service accepts, and how the redirect service emits it.

A destination is accepted only when it is an absolute ``http``/``https`` URL with a host, at most
2,048 characters, without control characters, whitespace, backslashes or credentials, and not one
of this service's own short links. Browsers and Python's parser disagree about backslashes,
``@`` and stripped whitespace, so those are refused before parsing rather than interpreted.

Accepted URLs are stored in a canonical form: lower-case scheme and host, IDNA (punycode) host,
non-ASCII characters of the path, query and fragment percent-encoded as UTF-8. The stored string
is therefore plain printable ASCII and goes into a ``Location`` header unchanged.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections.abc import Iterable
from urllib.parse import urlsplit

from shared.errors import InvalidField

MAX_URL_LENGTH = 2048
_DEFAULT_PORTS = {"http": 80, "https": 443}
_LABEL = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)")
_NOT_PRINTABLE_ASCII = re.compile(r"[^\x21-\x7e]")

Origin = tuple[str, int]


def origin(url: str) -> Origin:
    """``(host, port)`` of an http(s) URL, with the scheme's default port filled in."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return (parts.hostname or "", parts.port or _DEFAULT_PORTS.get(scheme, 0))


def validate_target_url(
    value: object, *, own_origins: Iterable[Origin] = (), field: str = "target_url"
) -> str:
    """The canonical form of ``value``, or :class:`InvalidField` naming ``field`` and the reason."""
    if not isinstance(value, str):
        raise InvalidField(field, "must be a string")
    if not value:
        raise InvalidField(field, "must not be empty")
    if len(value) > MAX_URL_LENGTH:
        raise InvalidField(field, f"must be at most {MAX_URL_LENGTH} characters")
    for ch in value:
        # C* are controls, format characters (bidi overrides, zero-width) and unassigned code
        # points; Z* is every kind of space.
        if ch == "\\" or unicodedata.category(ch)[0] in "CZ":
            raise InvalidField(field, f"must not contain {ch!r}")

    scheme, sep, rest = value.partition(":")
    scheme = scheme.lower()
    if not sep or scheme not in _DEFAULT_PORTS:
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
        port = parts.port
    except ValueError:
        raise InvalidField(field, "has an invalid port") from None
    host = _canonical_host(hostname, field)

    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc = f"{netloc}:{port}"
    tail = parts.path
    if parts.query or value.split("#", 1)[0].endswith("?"):
        tail += "?" + parts.query
    if parts.fragment or "#" in value:
        tail += "#" + parts.fragment
    canonical = f"{scheme}://{netloc}{_percent_encode(tail)}"
    if len(canonical) > MAX_URL_LENGTH:
        raise InvalidField(field, f"must be at most {MAX_URL_LENGTH} characters once encoded")

    effective = (host, port or _DEFAULT_PORTS[scheme])
    if effective in set(own_origins) and (parts.path == "/r" or parts.path.startswith("/r/")):
        raise InvalidField(field, "must not point at this service's own short links")
    return canonical


def _canonical_host(host: str, field: str) -> str:
    if not host:
        raise InvalidField(field, "must have a host")
    if ":" in host:  # urlsplit removed the brackets of an IPv6 literal
        try:
            return str(ipaddress.IPv6Address(host))
        except ValueError:
            raise InvalidField(field, "has an invalid IPv6 address") from None
    try:
        ascii_host = host.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise InvalidField(field, "has an invalid host name") from None
    name = ascii_host.removesuffix(".")
    if len(name) > 253 or not all(_LABEL.fullmatch(label) for label in name.split(".")):
        raise InvalidField(field, "has an invalid host name")
    return ascii_host


def _percent_encode(text: str) -> str:
    return _NOT_PRINTABLE_ASCII.sub(lambda m: "".join(f"%{b:02X}" for b in m.group().encode()), text)


def location_bytes(url: str) -> bytes:
    """``url`` as a safe ``Location`` header value, whatever was stored in the database.

    Canonical URLs pass through unchanged; anything else (a row written around the API) has
    every byte outside printable ASCII percent-encoded, so no CR/LF can split the response.
    """
    return _percent_encode(url).encode("ascii")
