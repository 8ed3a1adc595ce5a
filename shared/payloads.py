"""What a QR code of each kind carries: the payload text of a validated ``content``, spelt as phone
cameras and contact and calendar apps read it. Pure functions of plain values (the management
service encodes a code's images with them, the redirect service a dynamic contact's ``.vcf``).

- ``wifi``: ``WIFI:T:WPA;S:ssid;P:password;H:true;;``, with ``\\ ; , : "`` escaped by a backslash
  (the syntax the camera apps of iOS and Android read);
- ``vcard``: vCard 3.0 (RFC 2426), text values escaped, lines folded at 75 octets, CRLF;
- ``event``: an iCalendar VEVENT (RFC 5545) in a VCALENDAR, its times in UTC (every reader knows
  UTC; a VTIMEZONE of the event's zone would cost hundreds of bytes of the symbol for nothing). A
  wall-clock time is read as :mod:`zoneinfo` reads it with ``fold=0``: a time that does not exist
  (skipped when clocks go forward) takes the offset in force before the change, so 02:30 on the
  day Berlin skips 02:00-03:00 is 03:30 summer time; a time that happens twice (clocks go back)
  is its first occurrence;
- ``email``: a ``mailto:`` URI (RFC 6068); ``sms``: ``SMSTO:number:text``; ``tel``: a ``tel:`` URI;
  ``geo``: ``geo:lat,lon`` (RFC 5870); ``text``: the text itself.

Every encoder is deterministic: the same content is the same payload, byte for byte (images are
cached by their payload).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

CRLF = "\r\n"
# RFC 2426 and RFC 5545: a content line is folded so that no line exceeds 75 octets.
FOLD_OCTETS = 75
_WIFI_SPECIAL = frozenset('\\;,:"')


def wifi_escape(value: str) -> str:
    """A value of a ``WIFI:`` string: ``\\``, ``;``, ``,``, ``:`` and ``"`` escaped by a backslash."""
    return "".join("\\" + char if char in _WIFI_SPECIAL else char for char in value)


def wifi(content: Mapping[str, Any]) -> str:
    security = content.get("security") or "WPA"
    parts = [f"T:{'nopass' if security == 'none' else security}", f"S:{wifi_escape(content['ssid'])}"]
    if security != "none":
        parts.append(f"P:{wifi_escape(content.get('password') or '')}")
    if content.get("hidden"):
        parts.append("H:true")
    return "WIFI:" + ";".join(parts) + ";;"


def text_escape(value: str) -> str:
    """A TEXT value of vCard 3.0 and iCalendar: backslash, semicolon and comma escaped, line breaks
    as ``\\n``."""
    value = value.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,")
    return value.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\\n")


def fold(line: str) -> str:
    """A content line folded after at most 75 octets a line (a continuation starts with a space,
    which counts), never inside a UTF-8 sequence; lines end with CRLF."""
    pieces: list[str] = []
    current = ""
    size = 0
    limit = FOLD_OCTETS
    for char in line:
        width = len(char.encode())
        if size + width > limit:
            pieces.append(current)
            current, size, limit = "", 0, FOLD_OCTETS - 1
        current += char
        size += width
    pieces.append(current)
    return (CRLF + " ").join(pieces) + CRLF


def _name_parts(name: str) -> tuple[str, str]:
    """(family, given) of the contact's N property, kept simple and predictable: for a name without
    a comma, the last word is the family name and the words before it the given names ("Ada
    Lovelace": Lovelace; Ada); a name with a comma ("John O'Brien, Jr.", "Lovelace, Ada") is not
    guessed at: it all goes in the given names (FN, which readers show, is always the name as written)."""
    name = name.strip()
    if "," in name:
        return "", name
    given, _, family = name.rpartition(" ")
    return family, given


def vcard(content: Mapping[str, Any]) -> str:
    """A vCard 3.0 of the contact (``name`` required; the other fields when given)."""
    name = content["name"]
    family, given = _name_parts(name)
    lines = [
        "BEGIN:VCARD",
        "VERSION:3.0",
        f"N:{text_escape(family)};{text_escape(given)};;;",
        f"FN:{text_escape(name)}",
    ]
    if content.get("organisation"):
        lines.append(f"ORG:{text_escape(content['organisation'])}")
    if content.get("title"):
        lines.append(f"TITLE:{text_escape(content['title'])}")
    lines += [f"TEL;TYPE=VOICE:{phone}" for phone in content.get("phones") or ()]
    lines += [f"EMAIL;TYPE=INTERNET:{email}" for email in content.get("emails") or ()]
    if content.get("url"):
        # Escaped as text: vCard readers (vobject, phones) split a URL at an unescaped comma.
        lines.append(f"URL:{text_escape(content['url'])}")
    if content.get("address"):
        # The whole address as its street component: people write addresses in too many ways to split.
        lines.append(f"ADR;TYPE=WORK:;;{text_escape(content['address'])};;;;")
    if content.get("note"):
        lines.append(f"NOTE:{text_escape(content['note'])}")
    lines.append("END:VCARD")
    return "".join(fold(line) for line in lines)


def local_time(value: str, tz: str) -> datetime:
    """An event's ``start`` or ``end`` (ISO 8601; without an offset: a wall-clock time in ``tz``)."""
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(tz))
    return moment


def utc(moment: datetime) -> datetime:
    """The instant ``moment`` (an aware time) in UTC: the one comparison of two event times."""
    return moment.astimezone(UTC)


def _utc(moment: datetime) -> str:
    # Zero-padded by hand: strftime's %Y leaves years below 1000 without four digits on Linux.
    instant = utc(moment)
    return (
        f"{instant.year:04d}{instant.month:02d}{instant.day:02d}"
        f"T{instant.hour:02d}{instant.minute:02d}{instant.second:02d}Z"
    )


def event(content: Mapping[str, Any]) -> str:
    """An iCalendar VEVENT, its times in UTC. UID and DTSTAMP, which RFC 5545 requires, are derived
    from the content, so that the payload is a function of it."""
    start = local_time(content["start"], content["tz"])
    end = local_time(content["end"], content["tz"])
    digest = hashlib.sha256(repr(sorted(content.items())).encode()).hexdigest()[:16]
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        "PRODID:-//qr-service//contents//EN",
        "BEGIN:VEVENT",
        f"UID:{digest}@qr-service",
        f"DTSTAMP:{_utc(start)}",
        f"DTSTART:{_utc(start)}",
        f"DTEND:{_utc(end)}",
        f"SUMMARY:{text_escape(content['title'])}",
    ]
    if content.get("location"):
        lines.append(f"LOCATION:{text_escape(content['location'])}")
    if content.get("description"):
        lines.append(f"DESCRIPTION:{text_escape(content['description'])}")
    lines += ["END:VEVENT", "END:VCALENDAR"]
    return "".join(fold(line) for line in lines)


def email(content: Mapping[str, Any]) -> str:
    query = [f"{name}={quote(content[name], safe='')}" for name in ("subject", "body") if content.get(name)]
    return f"mailto:{quote(content['to'], safe='@+')}" + ("?" + "&".join(query) if query else "")


def sms(content: Mapping[str, Any]) -> str:
    return f"SMSTO:{content['number']}:{content.get('text') or ''}"


def tel(content: Mapping[str, Any]) -> str:
    return f"tel:{content['number'].replace(' ', '')}"


def _degrees(value: float) -> str:
    """Degrees to the micro-degree (11 cm), without trailing zeros."""
    return f"{float(value):.6f}".rstrip("0").rstrip(".")


def geo(content: Mapping[str, Any]) -> str:
    return f"geo:{_degrees(content['lat'])},{_degrees(content['lon'])}"


def text(content: Mapping[str, Any]) -> str:
    return str(content["text"])


ENCODERS = {
    "wifi": wifi,
    "vcard": vcard,
    "event": event,
    "email": email,
    "sms": sms,
    "tel": tel,
    "geo": geo,
    "text": text,
}


def payload(kind: str, content: Mapping[str, Any]) -> str:
    """The text a static code of ``kind`` encodes (its ``content`` validated)."""
    return ENCODERS[kind](content)
