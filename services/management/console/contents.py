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
HINTS = {
    "password": "Left empty for an open network (security none).",
    "security": "WPA, WEP or none.",
    "phones": "One a line, such as +33 1 23 45 67 89.",
    "emails": "One a line.",
    "start": "Such as 2026-03-28T20:00: a wall-clock time in the time zone below.",
    "end": "Such as 2026-03-28T23:00.",
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
                "label": name.replace("_", " ").capitalize() + ("" if info.is_required() else " (optional)"),
                "hint": HINTS.get(name, ""),
                "multiline": name in MULTILINE,
                "flag": name in _FLAGS,
            }
            for name, info in model.model_fields.items()
        ]
        drawn.append((kind, LABELS[kind], fields))
    return drawn


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
