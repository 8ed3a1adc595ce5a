"""What the console's forms send, as the API's models read it: text fields to the JSON values the
models expect (blank optional fields to null, tags from a comma list, checkboxes to booleans), and
every finding, per field, in the API's words."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from services.management.requests import findings
from services.management.schemas import QRCode

M = TypeVar("M", bound=BaseModel)

# A datetime-local input's value (no zone: the form says UTC).
_LOCAL_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2})?")
MAX_FIELD = 4096  # characters of any one text field the console reads


class FormErrors(Exception):
    """Findings by field, shown beside each field (the first one per field)."""

    def __init__(self, errors: Mapping[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = dict(errors)


def text(form: Mapping[str, Any], name: str) -> str:
    value = form.get(name)
    return value.strip()[:MAX_FIELD] if isinstance(value, str) else ""


def optional(form: Mapping[str, Any], name: str) -> str | None:
    return text(form, name) or None


def code_values(form: Mapping[str, Any], *, new: bool) -> dict[str, Any]:
    """The fields of the new-code and edit forms as a JSON body for NewQRCode or QRCodeChanges
    (every writable field: an edit sets each of them, blank ones to null)."""
    status = text(form, "redirect_status")
    values: dict[str, Any] = {
        "target_url": text(form, "target_url"),
        "title": optional(form, "title"),
        "tags": [tag.strip() for tag in text(form, "tags").split(",") if tag.strip()] or None,
        "redirect_status": int(status)
        if status.isascii() and status.isdigit() and len(status) < 5
        else status or 302,
        "enabled": form.get("enabled") == "on",
        "expires_at": expiry(text(form, "expires_at")),
        "fallback_url": optional(form, "fallback_url"),
        "forward_query": form.get("forward_query") == "on",
    }
    if new:
        values["slug"] = optional(form, "slug")
    return values


def expiry(value: str) -> str | None:
    """A datetime-local value, read as UTC; anything else goes on to the model as it is (and is
    refused there in the API's words)."""
    if not value:
        return None
    return value + ("Z" if _LOCAL_TIME.fullmatch(value) else "")


def validated(model: type[M], values: Mapping[str, Any], *, context: Mapping[str, Any]) -> M:
    """``values`` as ``model``; :class:`FormErrors` with every field's first finding."""
    try:
        return model.model_validate(dict(values), context=dict(context))
    except ValidationError as exc:
        unknown = getattr(model, "unknown", "is not a field here")
        errors: dict[str, str] = {}
        for field, reason in findings(exc, model, unknown=unknown):
            errors.setdefault(field, reason)
        raise FormErrors(errors) from None


def typed(form: Mapping[str, Any]) -> dict[str, Any]:
    """What a refused form posted, to show it again as it was typed (checkboxes as booleans)."""
    shown: dict[str, Any] = {name: text(form, name) for name in form if isinstance(form.get(name), str)}
    shown["enabled"] = form.get("enabled") == "on"
    shown["forward_query"] = form.get("forward_query") == "on"
    return shown


def edit_values(code: QRCode) -> dict[str, Any]:
    """A code's writable fields as the edit form shows them."""
    return {
        "target_url": code.target_url,
        "title": code.title or "",
        "tags": ", ".join(code.tags),
        "redirect_status": str(code.redirect_status),
        "enabled": code.enabled,
        "expires_at": code.expires_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M") if code.expires_at else "",
        "fallback_url": code.fallback_url or "",
        "forward_query": code.forward_query,
    }


def as_posted(values: Mapping[str, Any]) -> dict[str, str]:
    """Edit values as the form posts them (a checkbox that is on says "on", one that is off nothing)."""
    posted = {k: v for k, v in values.items() if isinstance(v, str)}
    posted.update({k: "on" for k, v in values.items() if v is True})
    return posted
