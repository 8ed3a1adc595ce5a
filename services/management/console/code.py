"""The console's page of one code: its image as the options change (a preview htmx redraws), its
logo, its destination and settings (only the fields changed on the form are sent), switching it on
or off, its history, and deleting it."""

from __future__ import annotations

import contextlib
from typing import Any
from urllib.parse import urlencode

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from services.management import contents, limits, schemas
from services.management.auth.roles import Role
from services.management.console import forms
from services.management.console.forms import FormErrors
from services.management.console.frame import Page, Pages, code_id, page, reason
from services.management.errors import InvalidValue
from services.management.logos import LOGO_TYPES
from services.management.rendering import check_contrast, check_drawable, contrast_ratio
from shared.errors import InvalidField, PayloadTooLarge

HISTORY_SHOWN = 20
# The image options as the page's fields label them (the preview names a refused one so).
IMAGE_OPTIONS = {
    "fg": "Modules",
    "bg": "Ground",
    "size": "Size (px)",
    "border": "Border (modules)",
    "ecc": "Error correction",
    "size_mm": "Width (mm)",
    "dpi": "Resolution (dpi)",
}


class CodePage(Pages):
    def routes(self) -> list[BaseRoute]:
        return [
            Route("/console/codes/{code_id}", self.code, methods=["GET", "HEAD"]),
            Route("/console/codes/{code_id}/preview", self.preview, methods=["GET", "HEAD"]),
            Route("/console/codes/{code_id}/edit", self.edit_code, methods=["POST"]),
            Route("/console/codes/{code_id}/enabled", self.switch, methods=["POST"]),
            Route("/console/codes/{code_id}/switch-off", self.confirm_switch_off, methods=["GET", "HEAD"]),
            Route("/console/codes/{code_id}/logo", self.set_logo, methods=["POST"]),
            Route("/console/codes/{code_id}/logo/remove", self.remove_logo, methods=["POST"]),
            Route("/console/codes/{code_id}/delete", self.confirm_delete, methods=["GET", "HEAD"]),
            Route("/console/codes/{code_id}/delete", self.delete_code, methods=["POST"]),
        ]

    @page(role=Role.viewer)
    async def code(self, request: Request, current: Page) -> Response:
        return await code_page(self, request, current, code_id(request))

    @page(role=Role.viewer)
    async def preview(self, request: Request, current: Page) -> Response:
        code = await self.service.codes.get(code_id(request), current.identity)
        return self.render(request, current, "_preview.html", **_preview_context(request, code))

    @page(role=Role.editor, write=True)
    async def edit_code(self, request: Request, current: Page) -> Response:
        """Only the fields changed on the form are sent: a field left as it was shown stays as it
        is (a time to the second, a tag holding a comma, a switch another tab flipped meanwhile)."""
        code = code_id(request)
        form = current.posted
        was = await self.service.codes.get(code, current.identity)
        before = forms.code_values(forms.as_posted(forms.edit_values(was)), new=False)
        hidden = _hidden_fields(was)  # not on the form: not changed by it
        values = {
            k: v for k, v in forms.code_values(form, new=False).items() if v != before[k] and k not in hidden
        }
        try:
            changes = forms.validated(schemas.QRCodeChanges, values, context=self.service.context).changes()
            now = await self.service.codes.update(code, changes, current.identity) if changes else was
        except (FormErrors, InvalidValue) as exc:  # beside the field each error names
            errors = exc.errors if isinstance(exc, FormErrors) else {exc.field: exc.reason}
            return await code_page(
                self, request, current, code, status_code=422, errors=errors, values=forms.typed(form)
            )
        # A save that stops a code working (an expiry already past, the switch off) says so.
        notice = "saved-stopped" if was.state == "on" and now.state != "on" else "saved"
        return RedirectResponse(f"/console/codes/{code}?notice={notice}", status_code=303)

    @page(role=Role.editor, write=True)
    async def switch(self, request: Request, current: Page) -> Response:
        code = code_id(request)
        enabled = forms.text(current.posted, "enabled") == "true"
        if not enabled and forms.text(current.posted, "confirmed") != "yes":
            code_now = await self.service.codes.get(code, current.identity)
            return self.render(request, current, "switch_off.html", code=code_now)
        try:
            await self.service.codes.update(code, {"enabled": enabled}, current.identity)
        except InvalidValue:  # a static code: nothing to switch (the page says why)
            code_now = await self.service.codes.get(code, current.identity)
            return self.render(request, current, "switch_off.html", status_code=422, code=code_now)
        notice = "enabled" if enabled else "disabled"
        return RedirectResponse(f"/console/codes/{code}?notice={notice}", status_code=303)

    @page(role=Role.editor)
    async def confirm_switch_off(self, request: Request, current: Page) -> Response:
        """Switching off asks first: every printed copy answers 410 from then on."""
        code = await self.service.codes.get(code_id(request), current.identity)
        return self.render(request, current, "switch_off.html", code=code)

    @page(role=Role.editor, write=True, upload="logo")
    async def set_logo(self, request: Request, current: Page) -> Response:
        code = code_id(request)
        try:
            data, content_type = await self._logo(current.posted.get("logo"))
            await self.service.images.set_logo(code, data, content_type, current.identity)
        except (InvalidField, PayloadTooLarge) as exc:  # the upload, as the form sent it
            error = reason(exc, "logo")
            return await code_page(self, request, current, code, status_code=exc.status, logo_error=error)
        except InvalidValue as exc:  # the image itself
            return await code_page(self, request, current, code, status_code=422, logo_error=exc.reason)
        return RedirectResponse(f"/console/codes/{code}?notice=logo", status_code=303)

    async def _logo(self, upload: object) -> tuple[bytes, str]:
        """The uploaded file and its type, when it is a PNG or JPEG within LOGO_MAX_BYTES."""
        if not isinstance(upload, UploadFile) or not upload.filename:
            raise InvalidField("logo", "choose a PNG or JPEG file")
        content_type = (upload.content_type or "").split(";", 1)[0].strip().lower()
        if content_type not in LOGO_TYPES:
            raise InvalidField("logo", "must be a PNG or JPEG image")
        data = await upload.read()
        limit = self.service.settings.logo_max_bytes
        if len(data) > limit:
            raise PayloadTooLarge(f"the logo must be at most {limit} bytes")
        return data, content_type

    @page(role=Role.editor, write=True)
    async def remove_logo(self, request: Request, current: Page) -> Response:
        code = code_id(request)
        await self.service.images.remove_logo(code, current.identity)
        return RedirectResponse(f"/console/codes/{code}?notice=logo-removed", status_code=303)

    @page(role=Role.admin)
    async def confirm_delete(self, request: Request, current: Page) -> Response:
        code = await self.service.codes.get(code_id(request), current.identity)
        return self.render(request, current, "delete.html", code=code)

    @page(role=Role.admin, write=True)
    async def delete_code(self, request: Request, current: Page) -> Response:
        await self.service.codes.delete(code_id(request), current.identity)
        return RedirectResponse("/console/?notice=deleted", status_code=303)


async def code_page(
    pages: Pages,
    request: Request,
    current: Page,
    code_id: str,
    *,
    status_code: int = 200,
    rules_form: Any = None,
    **fields: Any,
) -> Response:
    """The code's page (code.html) for any page group: ``fields`` go to page_context (a form's
    errors, values, logo error), ``rules_form`` is the rules' editor's state (none: the saved rules)."""
    code, history = await pages.service.codes.with_history(code_id, current.identity, limit=HISTORY_SHOWN)
    return pages.render(
        request,
        current,
        "code.html",
        status_code=status_code,
        rules_form=rules_form,
        **page_context(request, code, history, **fields),
    )


def page_context(
    request: Request,
    code: schemas.QRCode,
    history: Any,
    *,
    errors: dict[str, str] | None = None,
    values: dict[str, Any] | None = None,
    logo_error: str | None = None,
) -> dict[str, Any]:
    """What code.html shows of ``code``, for whichever page group renders it (its rules' editor too)."""
    return {
        "history": history,
        "errors": errors or {},
        "values": values if values is not None else forms.edit_values(code),
        "logo_error": logo_error,
        "hidden_fields": _hidden_fields(code),
        "editable_kind": code.kind if code.dynamic else None,
        **_preview_context(request, code),
    }


def _hidden_fields(code: schemas.QRCode) -> frozenset[str]:
    """The edit form's fields a code does not use: a target for a kind other than url, and what a
    short link does for a static code, which has none."""
    if code.kind == "url":
        return frozenset()
    if code.static:
        return frozenset({"target_url", *contents.REDIRECT_FIELDS})
    return frozenset({"target_url"})


def _image_options(
    request: Request, code: schemas.QRCode
) -> tuple[dict[str, str], dict[str, str], str | None]:
    """The preview's options as given, the errors by option (those of this code too: a size its
    symbol does not divide, say), and the image's query string (None while an option is wrong)."""
    given = {k: v.strip() for k, v in request.query_params.items() if k in IMAGE_OPTIONS and v.strip()}
    asked = dict(given)
    if asked.get("size_mm"):
        asked.pop("size", None)  # the form sends both; millimetres (with dpi) win
    errors: dict[str, str] = {}
    try:
        query = forms.validated(schemas.PngQuery, asked, context={})
        drawn = query.options("png").for_code(code.design).for_logo(code.logo_sha256 is not None)
        check_drawable(contents.encoded_by(code), drawn)
    except FormErrors as exc:
        errors = exc.errors
    except InvalidValue as exc:
        # A size in millimetres becomes pixels: its refusal is the millimetres' field's.
        field = "size_mm" if exc.field == "size" and "size_mm" in asked else exc.field
        errors = {field: exc.reason}
    return given, errors, (None if errors else urlencode(asked))


def _preview_context(request: Request, code: schemas.QRCode) -> dict[str, Any]:
    given, errors, image_query = _image_options(request, code)
    fg = _colour(given.get("fg"), limits.DEFAULT_FG)
    bg = _colour(given.get("bg"), limits.DEFAULT_BG)
    try:  # the rule itself, whatever else is wrong with the options
        check_contrast(fg, bg)
        verdict = None
    except InvalidValue as exc:
        verdict = exc.reason
    # The contrast is the verdict's to say, once; a field's own error is shown beside it.
    field_errors = {k: v for k, v in errors.items() if verdict is None or v != verdict}
    if verdict is None and ("fg" in errors or "bg" in errors):  # not a colour at all
        verdict = errors.get("fg") or errors.get("bg")
    svg_query = urlencode(
        {k: v for k, v in given.items() if k != "dpi" and not (k == "size" and "size_mm" in given)}
    )
    # A label sheet's codes are 10 to 180 mm: the print width when it is one, else the default.
    label_mm = str(limits.DEFAULT_LABEL_MM)
    with contextlib.suppress(ValueError):
        if limits.MIN_LABEL_MM <= float(given.get("size_mm", "")) <= limits.MAX_LABEL_MM:
            label_mm = given["size_mm"]
    pdf_query = urlencode({"ids": code.id, "ecc": given.get("ecc", limits.DEFAULT_ECC), "size_mm": label_mm})
    return {
        "code": code,
        "options": given,
        "option_errors": field_errors,
        "option_labels": IMAGE_OPTIONS,
        "image_query": image_query,
        "svg_query": svg_query,
        "pdf_query": pdf_query,
        "fg": fg,
        "bg": bg,
        "ratio": contrast_ratio(fg, bg),
        "verdict": verdict,
    }


def _colour(value: str | None, default: str) -> str:
    digits = (value or default).removeprefix("#").lower()
    if len(digits) == 3:
        digits = "".join(ch * 2 for ch in digits)
    if len(digits) != 6 or any(ch not in "0123456789abcdef" for ch in digits):
        return default
    return "#" + digits
