"""The new-code form's contents beyond a link (templates/_content.html): a panel of fields per
kind, named ``content.<kind>.<field>``, read here into the ``content`` object of the kind chosen.

Lists (a contact's phones and e-mails) are typed one a line; a yes-or-no is a checkbox; numbers
(latitude, longitude) go on as numbers when they read as one, else as text, refused by the model in
the API's words. Only the chosen kind's panel counts: the others may hold anything."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.management import contents

MAX_FIELD = 4096  # characters of one field read (a note may take many lines)
_LISTS = frozenset({"phones", "emails"})
_FLAGS = frozenset({"hidden"})
_NUMBERS = frozenset({"lat", "lon"})
# The kinds' panels, in the form's order: (field, label, hint, multi-line) for each field.
LABELS = {
    "wifi": "Wi-Fi network",
    "vcard": "Contact (vCard)",
    "event": "Event (calendar)",
    "email": "E-mail",
    "sms": "Text message (SMS)",
    "tel": "Phone call",
    "geo": "Place (geo)",
    "text": "Plain text",
}
# Labels where the field's name is no word (the others: the name, capitalised).
FIELD_LABELS = {
    "ssid": "SSID (network name)",
    "url": "URL",
    "tz": "Time zone",
    "lat": "Latitude",
    "lon": "Longitude",
    "to": "To",
}
_CHOICES = {"security": ("WPA", "WEP", "none")}
HINTS = {
    "ssid": f"At most {contents.MAX_SSID_BYTES} bytes (a letter with an accent takes two).",
    "password": (
        f"Left empty for an open network (security none); at most {contents.MAX_PASSWORD} characters."
    ),
    "phones": "One a line, such as +33 1 23 45 67 89.",
    "emails": "One a line.",
    "start": (
        "Such as 2026-03-28T20:00: a wall-clock time in the time zone below (years "
        f"{contents.MIN_EVENT_YEAR} to {contents.MAX_EVENT_YEAR})."
    ),
    "end": "Such as 2026-03-28T23:00: after the start.",
    "tz": "An IANA time zone, such as Europe/Paris (UTC when left empty).",
    "lat": "Degrees north, -90 to 90.",
    "lon": "Degrees east, -180 to 180.",
}
MULTILINE = frozenset({"address", "note", "description", "body", "text", "phones", "emails"})


def panels() -> list[tuple[str, str, list[dict[str, Any]]]]:
    """(kind, label, fields) for each static kind, as the template draws them."""
    drawn = []
    for kind, model in contents.MODELS.items():
        fields = [
            {
                "name": name,
                "form_name": f"content.{kind}.{name}",
                "label": label(name) + ("" if info.is_required() else " (optional)"),
                "hint": HINTS.get(name, ""),
                "multiline": name in MULTILINE,
                "flag": name in _FLAGS,
                "choices": _CHOICES.get(name, ()),
            }
            for name, info in model.model_fields.items()
        ]
        drawn.append((kind, LABELS[kind], fields))
    return drawn


def label(name: str) -> str:
    """A content field's label."""
    return FIELD_LABELS.get(name, name.replace("_", " ").capitalize())


def form_values(kind: str, content: Mapping[str, Any] | None) -> dict[str, Any]:
    """A stored ``content`` as its panel's fields show it (to edit a dynamic contact): lists one
    item a line, a yes-or-no as a checkbox's state."""
    if content is None or kind not in contents.MODELS:
        return {}
    shown: dict[str, Any] = {"kind": kind}
    for name in contents.MODELS[kind].model_fields:
        value = content.get(name)
        if name in _FLAGS:
            shown[f"content.{kind}.{name}"] = bool(value)
        elif isinstance(value, list):
            shown[f"content.{kind}.{name}"] = "\n".join(str(item) for item in value)
        elif value is not None:
            shown[f"content.{kind}.{name}"] = str(value)
    return shown


def described(content: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """(label, text) of each field a content holds, as a person reads it (a static code's page and
    its history): lists by commas, yes or no, a field left out not shown."""
    rows = []
    for name, value in (content or {}).items():
        if value is None or value == [] or value == "":
            continue
        if isinstance(value, bool):
            text = "yes" if value else "no"
        elif isinstance(value, list):
            text = ", ".join(str(item) for item in value)
        else:
            text = str(value)
        rows.append((label(name), text))
    return rows


def headline(kind: str, content: Mapping[str, Any] | None) -> str:
    """What a code of ``kind`` holds in a few words (its image's alt text): "Wi-Fi network Café"."""
    if kind not in LABELS or not content:
        return LABELS.get(kind, kind)
    main = {
        "wifi": "ssid",
        "vcard": "name",
        "event": "title",
        "email": "to",
        "sms": "number",
        "tel": "number",
    }
    if kind == "geo":
        return f"{LABELS[kind]} {content.get('lat')}, {content.get('lon')}"
    value = str(content.get(main.get(kind, "text")) or "")
    return f"{LABELS[kind]} {value[:80]}".strip()


def posted(form: Mapping[str, Any]) -> dict[str, Any] | None:
    """The ``content`` of the kind the form chose (None for a url code, or a form without a kind:
    an edit, which leaves the content as it is)."""
    kind = form.get("kind")
    if not isinstance(kind, str) or kind not in contents.MODELS:
        return None
    content: dict[str, Any] = {}
    for name in contents.MODELS[kind].model_fields:
        raw = form.get(f"content.{kind}.{name}")
        if name in _FLAGS:
            content[name] = raw == "on"
            continue
        value = raw.strip()[:MAX_FIELD] if isinstance(raw, str) else ""
        if not value:
            continue  # the field's default (a required one is then refused, naming it)
        if name in _LISTS:
            content[name] = [line.strip() for line in value.splitlines() if line.strip()]
        elif name in _NUMBERS:
            content[name] = _number(value)
        else:
            content[name] = value.replace("\r\n", "\n")
    return content


def _number(value: str) -> float | str:
    try:
        return float(value)
    except ValueError:
        return value
