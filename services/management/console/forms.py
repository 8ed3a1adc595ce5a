"""What the console's forms send, as the API's models read it: text fields to the JSON values the
models expect (blank optional fields to null, tags from a comma list, checkboxes to booleans), and
every finding, per field, in the API's words.

The code's form is made from the code's fields (:class:`~services.management.schemas.NewQRCode`):
each field in their order (the checkboxes last), shown as its kind asks (a text input, a list to
choose from, a checkbox), labelled as its ``Shown`` says; the edit form holds the fields a change
may make (:class:`~services.management.schemas.QRCodeChanges`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from services.management import bulk, limits
from services.management.console import contents as console_contents
from services.management.inputs import findings
from services.management.schemas import Kind, NewQRCode, QRCode, QRCodeChanges, choices_of, kind_of, shown
from services.management.schemas.fields import DESIGN_OPTIONS, TAG_SEPARATOR

M = TypeVar("M", bound=BaseModel)

# A datetime-local input's value (no zone: the form says UTC).
_LOCAL_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2})?")
MAX_FIELD = 4096  # characters of any one text field the console reads


@dataclass(frozen=True)
class FormField:
    """A field of the code's form (the templates' ``code_form``)."""

    name: str
    kind: Kind
    label: str
    hint: str
    input: str  # a text field's input type
    required: bool
    default: Any  # shown on a new code's form (a checkbox's state, the value chosen)
    choices: tuple[object, ...]
    notes: Mapping[object, str]  # beside some choices
    new_only: bool  # chosen once, at creation (the slug)


def _code_form() -> tuple[FormField, ...]:
    fields = []
    for name, info in NewQRCode.model_fields.items():
        kind, look = kind_of(info), shown(name, info)
        if look.input == "design":  # drawn by its own panel (_design.html, console/design.py)
            continue
        if kind == "json":
            continue  # redirect rules: an editor of their own (console/rules.py)
        default = None if info.is_required() else info.default
        fields.append(
            FormField(
                name,
                kind,
                look.label,
                look.hint,
                look.input,
                info.is_required(),
                default,
                choices_of(info) if kind == "choice" else (),
                look.notes,
                name not in QRCodeChanges.model_fields,
            )
        )
    return tuple(sorted(fields, key=lambda each: each.kind == "flag"))  # stable: the model's order


CODE_FORM = _code_form()


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
    return {field.name: _value(form, field) for field in CODE_FORM if new or not field.new_only}


def _value(form: Mapping[str, Any], field: FormField) -> Any:
    """A form field's text as the JSON value the model reads (what it cannot read goes on as it is,
    refused there in the API's words)."""
    name = field.name
    if name == "content":  # the panel of the kind chosen (console/contents.py)
        return console_contents.posted(form)
    if field.kind == "flag":
        return form.get(name) == "on"
    if field.kind == "list":
        return [each.strip() for each in text(form, name).split(",") if each.strip()] or None
    if field.kind == "moment":
        return expiry(text(form, name))
    if field.kind == "choice":
        given = text(form, name)
        numbers = all(isinstance(choice, int) for choice in field.choices)
        if numbers and given.isascii() and given.isdigit() and len(given) < 5:
            return int(given)
        return given or field.default
    return text(form, name) if field.required else optional(form, name)


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
            errors.setdefault(field, _url_hint(reason, values.get(field)))
        raise FormErrors(errors) from None


# A host and maybe a path, as people type a web address without its scheme.
_BARE_ADDRESS = re.compile(r"(?:[\w-]+\.)+[a-zA-Z]{2,63}(?::\d{1,5})?(?:[/?#]\S*)?")
_NOT_A_URL = "must be an absolute http or https URL"


def _url_hint(reason: str, value: Any) -> str:
    """The URL refusal made specific: a space, or a web address without https:// (offered back)."""
    if reason != _NOT_A_URL or not isinstance(value, str):
        return reason
    if any(ch.isspace() for ch in value):
        return "must not contain spaces (write %20 for one inside a URL)"
    if _BARE_ADDRESS.fullmatch(value):
        return f"{reason}; did you mean https://{value}?"
    return reason


def typed(form: Mapping[str, Any]) -> dict[str, Any]:
    """What a refused form posted, to show it again as it was typed (checkboxes as booleans)."""
    shown_again: dict[str, Any] = {name: text(form, name) for name in form if isinstance(form.get(name), str)}
    shown_again.update({f.name: form.get(f.name) == "on" for f in CODE_FORM if f.kind == "flag"})
    return shown_again


def edit_values(code: QRCode) -> dict[str, Any]:
    """A code's changeable fields as the edit form shows them (a dynamic contact's content in its
    panel's fields)."""
    values = {
        field.name: _shown(getattr(code, field.name), field) for field in CODE_FORM if not field.new_only
    }
    if code.dynamic:
        values.update(console_contents.form_values(code.kind, code.content))
    return values


def _shown(value: Any, field: FormField) -> Any:
    if field.kind == "flag":
        return value
    if field.kind == "list":
        return ", ".join(value)
    if field.kind == "moment":
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M") if isinstance(value, datetime) else ""
    if field.kind == "choice":
        return str(value)
    return value or ""


def as_posted(values: Mapping[str, Any]) -> dict[str, str]:
    """Edit values as the form posts them (a checkbox that is on says "on", one that is off nothing)."""
    posted = {k: v for k, v in values.items() if isinstance(v, str)}
    posted.update({k: "on" for k, v in values.items() if v is True})
    return posted


def csv_columns() -> str:
    """The columns a CSV of codes may have, as the upload form's hint lists them."""
    fields = {field.name: field for field in CODE_FORM}
    shown_columns = []
    for column in bulk.COLUMNS:
        field = fields.get(column)
        if field is not None and field.required:
            column += " (required)"
        elif field is not None and field.kind == "list":
            column += f" (separated by {TAG_SEPARATOR})"
        shown_columns.append(column)
    return ", ".join(shown_columns)


# -- the design panel (templates/_design.html, console/design.py) -----------------------------------

# The panel's colour fields, named apart from the image panel's fg and bg on the same page.
DESIGN_COLOURS = {"design_fg": "fg", "design_bg": "bg"}


def design_values(form: Mapping[str, Any]) -> dict[str, Any] | None:
    """The panel's fields as a design object (its options as the API takes them), or ``None`` for
    plain squares in black on white (nothing to save)."""
    values: dict[str, Any] = {}
    for name in (*DESIGN_COLOURS, *DESIGN_OPTIONS):
        raw = form.get(name)
        if not isinstance(raw, str) or not raw.strip():
            continue
        values[DESIGN_COLOURS.get(name, name)] = raw.strip()
    if values.get("frame") != "label":
        for name in ("frame_text", "frame_position", "frame_url"):
            values.pop(name, None)  # hidden with the frame: not sent by a client either
    else:
        values["frame_url"] = values.get("frame_url") in ("on", "true")
    if values.get("gradient") in (None, "none"):
        values.pop("gradient", None)
        values.pop("fg2", None)
    defaults = {"fg": limits.DEFAULT_FG, "bg": limits.DEFAULT_BG, "modules": "square", "finder": "square"}
    defaults["frame"] = "none"
    if all(values.get(name, default) == default for name, default in defaults.items()) and values.keys() <= {
        *defaults
    }:
        return None
    return values
