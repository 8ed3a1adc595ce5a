"""Destination URLs: what the management service accepts, and how the redirect service emits it.

A destination is accepted only when it is an absolute ``http``/``https`` URL with a host, at most
2,048 characters, without control characters, whitespace, backslashes or credentials, and not one
of this service's own short links. Browsers and Python's parser disagree about backslashes, ``@``
and stripped whitespace, so those are refused before parsing rather than interpreted.

Host names are read as browsers read them (the WHATWG URL standard's "domain to ASCII": UTS #46,
non-transitional, with IDNA 2008's code point rules for every label that is not plain ASCII): so
``faß.de`` is ``xn--fa-hia.de`` (Python's own ``idna`` codec is IDNA 2003 and says ``fass.de``, a
different domain). An accepted URL is stored with a non-ASCII host replaced by that ASCII form, so
that the resource shows the name a browser will look up: a homograph (a Cyrillic letter for a Latin
one) is plain to see as ``xn--``. The rest of the URL is stored as given; :func:`ascii_url` gives
the form that goes on the wire, every byte outside printable ASCII percent-encoded, so that no
``Location`` header can carry a line break or a byte a client would misread.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from urllib.parse import unquote, urlsplit

import idna

from shared.errors import InvalidField

MAX_URL_LENGTH = 2048
MAX_HOST_LENGTH = 253
_SCHEMES = ("http", "https")
# ASCII labels as browsers take them: letters, digits, '-' and '_' (which real hosts use), no
# leading or trailing hyphen.
_ASCII_LABEL = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)")
_NOT_PRINTABLE_ASCII = re.compile(r"[^\x21-\x7e]")
_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


class UrlRefused(ValueError):
    """A destination that is not accepted; the message says why (without the field's name)."""


def has_control_characters(text: str) -> bool:
    """Controls, format characters (bidi overrides, zero-width), surrogates or unassigned code points."""
    return any(unicodedata.category(ch)[0] == "C" for ch in text)


def own_hosts(public_base_url: str) -> frozenset[str]:
    """The host names (ASCII, lower case, no trailing dot) under which this service's short links
    are reached. A loopback base (``localhost``) is reached under every loopback name, so all of
    them count."""
    host = ascii_host(urlsplit(public_base_url).hostname or "localhost").rstrip(".")
    return _LOOPBACK_NAMES | {host} if is_loopback(host) else frozenset({host})


def check_target_url(value: object, *, own: frozenset[str] = frozenset()) -> str:
    """``value`` as it is stored (a non-ASCII host in its ASCII form) when it is an acceptable
    destination, else :class:`UrlRefused` with the reason. ``own`` are this service's host names
    (see :func:`own_hosts`)."""
    if not isinstance(value, str):
        raise UrlRefused("must be a string")
    if not value:
        raise UrlRefused("must not be empty")
    if len(value) > MAX_URL_LENGTH:
        raise UrlRefused(f"must be at most {MAX_URL_LENGTH} characters")
    for ch in value:
        # C* are controls, format characters, surrogates and unassigned code points; Z* is every
        # kind of space.
        if ch == "\\" or unicodedata.category(ch)[0] in "CZ":
            raise UrlRefused(f"must not contain {ch!a}")

    scheme, sep, rest = value.partition(":")
    if not sep or scheme.lower() not in _SCHEMES:
        raise UrlRefused("must be an absolute http or https URL")
    if not rest.startswith("//"):
        raise UrlRefused("must have a host (scheme://host/...)")
    try:
        parts = urlsplit(value)
    except ValueError:  # e.g. a bracketed host that Python's parser refuses
        raise UrlRefused("is not a valid URL") from None
    if "@" in parts.netloc:
        raise UrlRefused("must not contain credentials (user@host)")
    host_text, port_text = _split_host_port(parts.netloc)
    if port_text and not (port_text.isascii() and port_text.isdigit() and int(port_text) <= 65535):
        raise UrlRefused("has an invalid port")
    host = ascii_host(host_text)
    stored = value
    if host_text.startswith("["):
        host = host.join("[]")
    elif not host_text.isascii():  # the name a browser looks up, in place of what was typed
        start = len(parts.scheme) + 3
        stored = value[:start] + host + value[start + len(host_text) :]
    if len(ascii_url(stored)) > MAX_URL_LENGTH:
        raise UrlRefused(f"must be at most {MAX_URL_LENGTH} characters once encoded")

    bare = host.strip("[]").rstrip(".")
    is_own = bare in own or (is_loopback(bare) and bool(own & _LOOPBACK_NAMES))
    routed = _routed_path(parts.path)
    if is_own and (routed == "/r" or routed.startswith("/r/")):
        raise UrlRefused("must not point at this service's own short links")
    return stored


def validate_target_url(
    value: object, *, own: frozenset[str] = frozenset(), field: str = "target_url"
) -> str:
    """:func:`check_target_url`, refusing with :class:`InvalidField` naming ``field``."""
    try:
        return check_target_url(value, own=own)
    except UrlRefused as exc:
        raise InvalidField(field, str(exc)) from None


def _split_host_port(netloc: str) -> tuple[str, str]:
    """The host as written (brackets kept for an IPv6 literal) and the port text after it."""
    if netloc.startswith("["):
        end = netloc.find("]")
        if end < 0:
            raise UrlRefused("has an invalid IPv6 address")
        rest = netloc[end + 1 :]
        if rest and not rest.startswith(":"):
            raise UrlRefused("is not a valid URL")
        return netloc[: end + 1], rest[1:]
    host, _, port = netloc.partition(":")
    return host, port


def ascii_host(hostname: str) -> str:
    """The host as a browser looks it up: an IPv6 literal (brackets optional) in compressed form,
    a name in ASCII (UTS #46 non-transitional, IDNA 2008), lower case, a trailing dot kept.
    :class:`UrlRefused` for anything a browser would refuse."""
    if not hostname:
        raise UrlRefused("must have a host")
    if hostname.startswith("[") or ":" in hostname:
        inner = hostname.removeprefix("[").removesuffix("]")
        # No zone id (fe80::1%25eth0: meaningless beyond this machine) and no IPvFuture ([v1.x]).
        if "%" in inner or not inner or not all(ch in "0123456789abcdefABCDEF:." for ch in inner):
            raise UrlRefused("has an invalid IPv6 address")
        try:
            return str(ipaddress.IPv6Address(inner))
        except ValueError:
            raise UrlRefused("has an invalid IPv6 address") from None
    try:
        mapped = idna.uts46_remap(hostname, std3_rules=False, transitional=False)
    except idna.IDNAError:
        raise UrlRefused("has an invalid host name") from None
    name = mapped.removesuffix(".")
    dot = "." if mapped.endswith(".") else ""
    labels = []
    for label in name.split("."):
        if label.isascii():
            if not _ASCII_LABEL.fullmatch(label) or (label.startswith("xn--") and not _valid_alabel(label)):
                raise UrlRefused("has an invalid host name")
            labels.append(label)
            continue
        try:
            labels.append(idna.alabel(label).decode("ascii"))
        except (idna.IDNAError, UnicodeError) as exc:
            raise UrlRefused(f"has a host name that IDNA 2008 refuses ({exc})"[:200]) from None
    host = ".".join(labels)
    if len(host) > MAX_HOST_LENGTH or any(len(label) > 63 for label in labels):
        raise UrlRefused("has a host name that is too long")
    return host + dot


def _valid_alabel(label: str) -> bool:
    """Whether an ``xn--`` label is real punycode of a label IDNA 2008 allows."""
    try:
        idna.ulabel(label)
    except (idna.IDNAError, UnicodeError):
        return False
    return True


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
    if hostname and not parts.netloc.isascii() and url[start : start + len(parts.netloc)] == parts.netloc:
        userinfo, at, hostport = parts.netloc.rpartition("@")
        host, colon, port = hostport.rpartition(":") if hostport.count(":") == 1 else (hostport, "", "")
        try:
            netloc = f"{userinfo}{at}{ascii_host(host)}{colon}{port}"
            url = url[:start] + netloc + url[start + len(parts.netloc) :]
        except UrlRefused:
            pass  # left for the percent-encoding below
    return _NOT_PRINTABLE_ASCII.sub(
        lambda m: "".join(f"%{b:02X}" for b in m.group().encode("utf-8", "surrogatepass")), url
    )


def location_bytes(url: str) -> bytes:
    """``url`` as a safe ``Location`` header value, whatever was stored in the database."""
    return ascii_url(url).encode("ascii")


def is_loopback(host: str) -> bool:
    """Whether a browser would connect to this machine for ``host`` (ASCII, lower case, no trailing
    dot): loopback names, ``*.localhost`` (which browsers resolve to loopback themselves), and
    loopback addresses in every spelling a browser accepts (``127.1``, ``0x7f000001``,
    ``2130706433``, ``::ffff:127.0.0.1``), and the unspecified address."""
    if host in _LOOPBACK_NAMES or host.endswith(".localhost"):
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
    """The path as any server in front of the short links may read it: every escape decoded, again
    while any is left (``%252F`` is a ``%2F`` to a second decoder), backslashes read as slashes
    (browsers do for http), dot segments and empty segments removed.

    Servers differ: Traefik routes ``/r%2Fabc`` to the admin chain, but the redirect service, reached
    on its own port, hears ``/r/abc`` (ASGI paths arrive decoded). So the path is read in the most
    decoded form any of them could arrive at; a destination refused in this way is no real page of
    this service's own anyway. The ``r`` stays case-sensitive: ``/R/`` is not a short link to the
    edge (``PathPrefix`` is case-sensitive) nor to the redirect service, so it cannot loop.
    """
    while "%" in path:  # each round shortens the path: at most len(path) / 3 of them
        decoded = unquote(path)
        if decoded == path:
            break
        path = decoded
    segments: list[str] = []
    for segment in path.replace("\\", "/").split("/"):
        if segment == "..":
            if segments:
                segments.pop()
        elif segment not in ("", "."):
            segments.append(segment)
    return "/" + "/".join(segments)
