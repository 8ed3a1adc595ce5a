"""The admin console: server-rendered pages over the same models and functions as the API.

Every page works without JavaScript (forms post, the server redirects or renders the form again
with each field's error beside it); htmx redraws the QR preview as its options change, uPlot draws
the scan series, and a button copies the short URL. The images, exports and CSV files a page links
to are the API's own (a console session may read the API; only the console's forms write, each
checked against cross-site forgery, see :mod:`services.management.auth.sessions`).

Every answer carries a strict content security policy (nothing from elsewhere, no inline script or
style), ``X-Frame-Options: DENY`` and ``Cache-Control: no-store``; Jinja2 escapes every value.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import hashlib
import io
import json
import logging
import zoneinfo
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from services.management import limits, schemas
from services.management.auth.identity import Identity, identity_of
from services.management.auth.sessions import LIFETIME_SECONDS, Session, Sessions, cookie_name
from services.management.codes import Filters
from services.management.console import forms
from services.management.console.forms import FormErrors
from services.management.errors import (
    BulkRefused,
    CodeNotFound,
    DomainError,
    InvalidValue,
    LogoNotFound,
    SlugTaken,
    TryAgain,
    Unreadable,
)
from services.management.logos import LOGO_TYPES
from services.management.rendering import check_contrast, contrast_ratio
from services.management.requests import read_body
from services.management.service import Service
from shared.errors import BadRequest, InvalidField, NotFound, PayloadTooLarge, ServiceError
from shared.ids import is_well_formed

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
PAGE_SIZE = 25
HISTORY_SHOWN = 20
CSV_ROWS_SHOWN = 1000
FORM_OVERHEAD = 16 * 1024  # a multipart body's boundaries and headers around an uploaded file
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
# The notices a redirect may ask a page to show: fixed texts, so no URL can put words on a page.
NOTICES = {
    "created": "The code was created.",
    "saved": "The changes were saved.",
    "enabled": "The code is switched on: it redirects again.",
    "disabled": "The code is switched off: it answers 410 (or its fallback URL).",
    "deleted": "The code was deleted.",
    "logo": "The logo was saved; the images carry it now.",
    "logo-removed": "The logo was removed.",
    "signed-out": "You are signed out.",
}
ORDERS = {"-created_at": "Newest first", "created_at": "Oldest first", "-scan_count": "Most scanned"}
EXPORTS = {
    "zip-png": ("export.zip", {"format": "png"}),
    "zip-svg": ("export.zip", {"format": "svg"}),
    "pdf": ("export.pdf", {}),
}
IMAGE_OPTIONS = ("size", "border", "ecc", "fg", "bg", "size_mm", "dpi")


@dataclass
class Page:
    """One console request: its session (made now when it had none), who is calling, the form it
    posted, and how to answer."""

    request: Request
    session: Session
    csrf: str
    signed_in_as: str | None
    identity: Identity
    new_cookie: str | None = None
    form: FormData | None = None

    @property
    def posted(self) -> FormData:
        """The form a write posted (read and checked by the frame before the handler runs)."""
        assert self.form is not None, "only a write has a form"
        return self.form


Handler = Callable[["Console", Request, Page], Awaitable[Response]]


def page(*, write: bool = False) -> Callable[[Handler], Callable[[Console, Request], Awaitable[Response]]]:
    """A console endpoint: the session (sign-in first when tokens are on), the forgery checks for
    ``write``, the API's errors as a page, and the security headers on whatever it answers."""

    def wrap(handler: Handler) -> Callable[[Console, Request], Awaitable[Response]]:
        @functools.wraps(handler)
        async def endpoint(self: Console, request: Request) -> Response:
            response = await self._serve(request, handler, write=write)
            response.headers.update(SECURITY_HEADERS)
            return response

        return endpoint

    return wrap


class Console:
    def __init__(self, service: Service, sessions: Sessions) -> None:
        self.service = service
        self.sessions = sessions
        environment = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        environment.globals.update(
            orders=ORDERS, statuses=limits.REDIRECT_STATUSES, ecc_levels=limits.ECC_LEVELS, limits=limits
        )
        environment.filters["moment"] = _moment
        environment.filters["shown"] = _shown
        self.templates = Jinja2Templates(env=environment)
        self._zones = sorted(zoneinfo.available_timezones() | {"UTC"})

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/", self.root, methods=["GET", "HEAD"]),
            Route("/console", self.root, methods=["GET", "HEAD"]),
            Route("/console/", self.codes, methods=["GET", "HEAD"]),
            Route("/console/sign-in", self.sign_in, methods=["GET", "HEAD", "POST"]),
            Route("/console/sign-out", self.sign_out, methods=["POST"]),
            Route("/console/new", self.new_code, methods=["GET", "HEAD"]),
            Route("/console/new", self.create_code, methods=["POST"]),
            Route("/console/bulk", self.create_in_bulk, methods=["POST"]),
            Route("/console/export", self.export, methods=["GET", "HEAD"]),
            Route("/console/scans", self.all_scans, methods=["GET", "HEAD"]),
            Route("/console/codes/{code_id}", self.code, methods=["GET", "HEAD"]),
            Route("/console/codes/{code_id}/preview", self.preview, methods=["GET", "HEAD"]),
            Route("/console/codes/{code_id}/edit", self.edit_code, methods=["POST"]),
            Route("/console/codes/{code_id}/enabled", self.switch, methods=["POST"]),
            Route("/console/codes/{code_id}/logo", self.set_logo, methods=["POST"]),
            Route("/console/codes/{code_id}/logo/remove", self.remove_logo, methods=["POST"]),
            Route("/console/codes/{code_id}/delete", self.confirm_delete, methods=["GET", "HEAD"]),
            Route("/console/codes/{code_id}/delete", self.delete_code, methods=["POST"]),
            Route("/console/codes/{code_id}/scans", self.scans, methods=["GET", "HEAD"]),
            Mount("/console/static", StaticFiles(directory=HERE / "static"), name="console-static"),
            Route("/console/{rest:path}", self.not_found, methods=["GET", "HEAD", "POST"]),
        ]

    # -- the frame ---------------------------------------------------------------------------------

    async def _serve(self, request: Request, handler: Handler, *, write: bool) -> Response:
        try:
            session = await self.sessions.from_scope(request.scope)
        except DomainError as exc:  # the sign-outs cannot be read
            return self._error_page(request, None, exc)
        new_cookie = None
        if session is None and not self.sessions.sign_in_required and not write:
            session, new_cookie = self.sessions.issue()
        if session is None:
            if write:
                return self._refused(
                    request,
                    None,
                    "there is no session (it ended, or the form came from another site). Open the page again",
                )
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/console/sign-in?{urlencode({'next': target})}", status_code=303)
        signed_in_as = self.sessions.token_name(session)
        current = Page(
            request,
            session,
            self.sessions.csrf_token(session),
            signed_in_as,
            # The history's "by" is the session's token, as for a bearer token.
            identity_of(request.scope).signed_in(session, signed_in_as),
            new_cookie,
        )
        form: FormData | None = None
        try:
            if write:
                form = await self._form(request)
                reason = self.sessions.forged(request.headers, session, forms.text(form, "csrf") or None)
                if reason is not None:
                    log.warning("console form refused", extra={"reason": reason})
                    return self._refused(request, current, reason)
                current.form = form
            response = await handler(self, request, current)
        except (ServiceError, DomainError) as exc:
            response = self._error_page(request, current, exc)
        finally:
            if form is not None:
                await form.close()  # uploaded files' temporary files
        if current.new_cookie is not None:
            self._set_cookie(request, response, current.new_cookie)
        return response

    def _refused(self, request: Request, current: Page | None, reason: str) -> Response:
        """A form refused as possibly forged: 400, not 403 (at the edge, a 403 page is the allowlist's)."""
        return self.render(
            request,
            current,
            "error.html",
            status_code=400,
            title="Refused",
            message=f"This form was refused: {reason}.",
        )

    def _error_page(
        self, request: Request, current: Page | None, exc: ServiceError | DomainError
    ) -> Response:
        status = exc.status if isinstance(exc, ServiceError) else _status_of(exc)
        return self.render(
            request,
            current,
            "error.html",
            status_code=status,
            title=_error_title(status),
            message=exc.message,
        )

    async def _form(self, request: Request) -> FormData:
        settings = self.service.settings
        path = request.url.path
        if path == "/console/bulk":
            limit = settings.bulk_max_body_bytes
        elif path.endswith("/logo"):
            limit = settings.logo_max_bytes + FORM_OVERHEAD
        else:
            limit = settings.max_body_bytes
        _, body = await read_body(
            request, accepted=("application/x-www-form-urlencoded", "multipart/form-data"), max_bytes=limit
        )
        request._body = body  # parsed from what was read, within the limit
        try:
            return await request.form(max_files=1, max_fields=50, max_part_size=len(body) + 1)
        except Exception as exc:  # python-multipart's refusals of a malformed body
            raise BadRequest(f"the form cannot be read: {type(exc).__name__}") from None

    def _set_cookie(self, request: Request, response: Response, value: str) -> None:
        # Over HTTPS the name is __Host-'d, which browsers take only with Secure, Path=/ and no
        # Domain; over HTTP they refuse that prefix, so the plain name goes without Secure.
        https = self.sessions.https(request.scope)
        response.set_cookie(
            cookie_name(https),
            value,
            max_age=LIFETIME_SECONDS,
            path="/",
            httponly=True,
            samesite="strict",
            secure=https,
        )

    def render(
        self, request: Request, current: Page | None, template: str, *, status_code: int = 200, **context: Any
    ) -> Response:
        notice = NOTICES.get(request.query_params.get("notice", ""))
        frame = {
            "path": request.url.path,
            "csrf": current.csrf if current else "",
            "signed_in_as": current.signed_in_as if current else None,
            "sign_in_required": self.sessions.sign_in_required,
            "notice": notice,
        }
        return self.templates.TemplateResponse(
            request, template, {**frame, **context}, status_code=status_code, headers=SECURITY_HEADERS
        )

    async def not_found(self, request: Request) -> Response:
        return self._error_page(request, None, NotFound("there is no such page in the console"))

    # -- sign-in -----------------------------------------------------------------------------------

    async def root(self, request: Request) -> Response:
        return RedirectResponse("/console/", status_code=303, headers=SECURITY_HEADERS)

    async def sign_in(self, request: Request) -> Response:
        target = _local_target(request.query_params.get("next"))
        if not self.sessions.sign_in_required:
            return RedirectResponse(target, status_code=303, headers=SECURITY_HEADERS)
        if request.method != "POST":
            return self.render(request, None, "sign_in.html", next=target, error=None)
        form = await self._form(request)
        # No session yet, so no token to match: the browser's own headers judge where it came from.
        reason = self.sessions.forged(request.headers, Session("", "", 0), None)
        if reason is not None and "security token" not in reason:
            return self._refused(request, None, reason)
        token = forms.text(form, "token")
        digest = _sha256(token) if token else None
        name = self.sessions.tokens.name_for_digest(digest) if digest and self.sessions.tokens else None
        target = _local_target(forms.text(form, "next"))
        if name is None:
            log.warning("console sign-in refused")
            return self.render(
                request,
                None,
                "sign_in.html",
                status_code=401,
                next=target,
                error="That token is not one this service accepts.",
            )
        assert digest is not None
        _, cookie = self.sessions.issue(digest)
        log.info("console sign-in", extra={"token_name": name})
        response = RedirectResponse(target, status_code=303, headers=SECURITY_HEADERS)
        self._set_cookie(request, response, cookie)
        return response

    @page(write=True)
    async def sign_out(self, request: Request, current: Page) -> Response:
        await self.sessions.end(current.session)
        target = "/console/sign-in?notice=signed-out" if self.sessions.sign_in_required else "/console/"
        response = RedirectResponse(target, status_code=303)
        https = self.sessions.https(request.scope)
        response.delete_cookie(cookie_name(https), path="/", secure=https, httponly=True, samesite="strict")
        return response

    # -- codes -------------------------------------------------------------------------------------

    @page()
    async def codes(self, request: Request, current: Page) -> Response:
        values = {k: v for k, v in request.query_params.items() if k in ("q", "tag", "order", "cursor") and v}
        values.setdefault("order", "-created_at")
        errors: dict[str, str] = {}
        try:
            query = forms.validated(schemas.ListQuery, {**values, "limit": PAGE_SIZE}, context={})
        except FormErrors as exc:
            errors = exc.errors
            values = {k: v for k, v in values.items() if k not in errors and k != "cursor"}
            values["order"] = values.get("order", "-created_at") if "order" not in errors else "-created_at"
            query = forms.validated(schemas.ListQuery, {**values, "limit": PAGE_SIZE}, context={})
        filters = Filters(q=query.q, tag=query.tag, order=query.order)
        try:
            listing = await self.service.codes.page(filters, limit=query.limit, cursor=query.cursor)
        except InvalidValue:  # a cursor of the right form that names no place in the list
            errors["cursor"] = "is not a page of this list"
            values.pop("cursor", None)
            listing = await self.service.codes.page(filters, limit=query.limit, cursor=None)
        tags = await self.service.codes.known_tags()
        kept = {k: v for k, v in values.items() if k != "cursor"}
        first_page = "?" + urlencode(kept)
        next_page = "?" + urlencode({**kept, "cursor": listing.next_cursor}) if listing.next_cursor else None
        return self.render(
            request,
            current,
            "codes.html",
            listing=listing,
            values=values,
            errors=errors,
            tags=tags,
            first_page=first_page,
            next_page=next_page,
            paged="cursor" in values,
        )

    @page()
    async def export(self, request: Request, current: Page) -> Response:
        chosen = [value for value in request.query_params.getlist("id") if is_well_formed(value)]
        kind = request.query_params.get("as", "")
        if kind not in EXPORTS:
            raise InvalidField("as", f"must be one of {', '.join(EXPORTS)}")
        if not chosen:
            raise BadRequest("select at least one code to export")
        if len(chosen) > limits.MAX_SELECTED:
            raise BadRequest(f"select at most {limits.MAX_SELECTED} codes at once")
        path, extra = EXPORTS[kind]
        query = urlencode({**extra, "ids": ",".join(dict.fromkeys(chosen))})
        return RedirectResponse(f"/api/v1/qr/{path}?{query}", status_code=303)

    @page()
    async def new_code(self, request: Request, current: Page) -> Response:
        return self.render(
            request,
            current,
            "new.html",
            values={"enabled": True},
            errors={},
            rows=None,
            problems={},
            bulk_error=None,
        )

    @page(write=True)
    async def create_code(self, request: Request, current: Page) -> Response:
        form = current.posted
        values = forms.code_values(form, new=True)
        try:
            new = forms.validated(schemas.NewQRCode, values, context=self.service.context)
            created = await self.service.codes.create(new, current.identity)
        except FormErrors as exc:
            return self._new_again(request, current, form, exc.errors)
        except (SlugTaken, InvalidValue) as exc:
            field = exc.field or "target_url"
            return self._new_again(request, current, form, {field: _reason(exc, field)})
        return RedirectResponse(f"/console/codes/{created.id}?notice=created", status_code=303)

    def _new_again(self, request: Request, current: Page, form: FormData, errors: dict[str, str]) -> Response:
        shown: dict[str, Any] = {
            name: forms.text(form, name) for name in form if isinstance(form.get(name), str)
        }
        shown["enabled"] = form.get("enabled") == "on"
        shown["forward_query"] = form.get("forward_query") == "on"
        return self.render(
            request,
            current,
            "new.html",
            status_code=422,
            values=shown,
            errors=errors,
            rows=None,
            problems={},
            bulk_error=None,
        )

    @page(write=True)
    async def create_in_bulk(self, request: Request, current: Page) -> Response:
        upload = current.posted.get("csv")
        data = await upload.read() if isinstance(upload, UploadFile) else b""
        if not data.strip():
            return self._bulk_again(request, current, None, {}, "Choose a CSV file with a header line.")
        rows = _csv_preview(data)
        try:
            result = await self.service.bulk.create(
                "text/csv", data, partial=False, identity=current.identity
            )
        except BulkRefused as exc:
            problems: dict[int, list[str]] = {}
            for error in exc.errors:
                problems.setdefault(error.row, []).append(f"{error.field}: {error.message}")
            return self._bulk_again(request, current, rows, problems, exc.message)
        except (InvalidValue, Unreadable) as exc:
            return self._bulk_again(request, current, rows, {}, exc.message)
        return self.render(request, current, "bulk_done.html", created=result.created)

    def _bulk_again(
        self,
        request: Request,
        current: Page,
        rows: list[tuple[int, dict[str, str]]] | None,
        problems: dict[int, list[str]],
        message: str,
    ) -> Response:
        return self.render(
            request,
            current,
            "new.html",
            status_code=422,
            values={"enabled": True},
            errors={},
            rows=rows,
            problems=problems,
            bulk_error=message,
        )

    # -- one code ----------------------------------------------------------------------------------

    def _image_options(self, request: Request) -> tuple[dict[str, str], dict[str, str], str | None]:
        """The preview's options as given, the errors by option, and the image's query string (None
        while an option is wrong)."""
        given = {k: v.strip() for k, v in request.query_params.items() if k in IMAGE_OPTIONS and v.strip()}
        asked = dict(given)
        if asked.get("size_mm"):
            asked.pop("size", None)  # the form sends both; millimetres (with dpi) win
        errors: dict[str, str] = {}
        try:
            query = forms.validated(schemas.PngQuery, asked, context={})
            query.options("png")
        except FormErrors as exc:
            errors = exc.errors
        except InvalidValue as exc:
            errors = {exc.field: exc.reason}
        return given, errors, (None if errors else urlencode(asked))

    def _preview_context(self, request: Request, code: schemas.QRCode) -> dict[str, Any]:
        given, errors, image_query = self._image_options(request)
        fg = _colour(given.get("fg"), limits.DEFAULT_FG)
        bg = _colour(given.get("bg"), limits.DEFAULT_BG)
        try:  # the rule itself, whatever else is wrong with the options
            check_contrast(fg, bg)
            verdict = None
        except InvalidValue as exc:
            verdict = exc.reason
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
        pdf_query = urlencode(
            {"ids": code.id, "ecc": given.get("ecc", limits.DEFAULT_ECC), "size_mm": label_mm}
        )
        return {
            "code": code,
            "options": given,
            "option_errors": errors,
            "image_query": image_query,
            "svg_query": svg_query,
            "pdf_query": pdf_query,
            "fg": fg,
            "bg": bg,
            "ratio": contrast_ratio(fg, bg),
            "verdict": verdict,
        }

    async def _code_page(
        self,
        request: Request,
        current: Page,
        code_id: str,
        *,
        status_code: int = 200,
        errors: dict[str, str] | None = None,
        values: dict[str, Any] | None = None,
        logo_error: str | None = None,
    ) -> Response:
        code, history = await self.service.codes.with_history(code_id, limit=HISTORY_SHOWN)
        return self.render(
            request,
            current,
            "code.html",
            status_code=status_code,
            history=history,
            errors=errors or {},
            values=values if values is not None else _edit_values(code),
            logo_error=logo_error,
            **self._preview_context(request, code),
        )

    @page()
    async def code(self, request: Request, current: Page) -> Response:
        return await self._code_page(request, current, _code_id(request))

    @page()
    async def preview(self, request: Request, current: Page) -> Response:
        code = await self.service.codes.get(_code_id(request))
        return self.render(request, current, "_preview.html", **self._preview_context(request, code))

    @page(write=True)
    async def edit_code(self, request: Request, current: Page) -> Response:
        """Only the fields changed on the form are sent: a field left as it was shown stays as it
        is (a time to the second, a tag holding a comma, a switch another tab flipped meanwhile)."""
        code_id = _code_id(request)
        form = current.posted
        shown = _edit_values(await self.service.codes.get(code_id))
        before = forms.code_values(_as_form(shown), new=False)
        values = {k: v for k, v in forms.code_values(form, new=False).items() if v != before[k]}
        try:
            changes = forms.validated(schemas.QRCodeChanges, values, context=self.service.context).changes()
            if changes:
                await self.service.codes.update(code_id, changes, current.identity)
        except (FormErrors, InvalidValue) as exc:
            errors = exc.errors if isinstance(exc, FormErrors) else {exc.field: exc.reason}
            typed: dict[str, Any] = {
                name: forms.text(form, name) for name in form if isinstance(form.get(name), str)
            }
            typed["enabled"] = form.get("enabled") == "on"
            typed["forward_query"] = form.get("forward_query") == "on"
            return await self._code_page(
                request, current, code_id, status_code=422, errors=errors, values=typed
            )
        return RedirectResponse(f"/console/codes/{code_id}?notice=saved", status_code=303)

    @page(write=True)
    async def switch(self, request: Request, current: Page) -> Response:
        code_id = _code_id(request)
        enabled = forms.text(current.posted, "enabled") == "true"
        await self.service.codes.update(code_id, {"enabled": enabled}, current.identity)
        notice = "enabled" if enabled else "disabled"
        return RedirectResponse(f"/console/codes/{code_id}?notice={notice}", status_code=303)

    @page(write=True)
    async def set_logo(self, request: Request, current: Page) -> Response:
        code_id = _code_id(request)
        try:
            data, content_type = await self._logo(current.posted.get("logo"))
            await self.service.images.set_logo(code_id, data, content_type, current.identity)
        except (InvalidField, PayloadTooLarge) as exc:  # the upload, as the form sent it
            reason = _reason(exc, "logo")
            return await self._code_page(request, current, code_id, status_code=exc.status, logo_error=reason)
        except InvalidValue as exc:  # the image itself
            return await self._code_page(request, current, code_id, status_code=422, logo_error=exc.reason)
        return RedirectResponse(f"/console/codes/{code_id}?notice=logo", status_code=303)

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

    @page(write=True)
    async def remove_logo(self, request: Request, current: Page) -> Response:
        code_id = _code_id(request)
        await self.service.images.remove_logo(code_id, current.identity)
        return RedirectResponse(f"/console/codes/{code_id}?notice=logo-removed", status_code=303)

    @page()
    async def confirm_delete(self, request: Request, current: Page) -> Response:
        code = await self.service.codes.get(_code_id(request))
        return self.render(request, current, "delete.html", code=code)

    @page(write=True)
    async def delete_code(self, request: Request, current: Page) -> Response:
        code_id = _code_id(request)
        await self.service.codes.delete(code_id, current.identity)
        return RedirectResponse("/console/?notice=deleted", status_code=303)

    # -- scans -------------------------------------------------------------------------------------

    @page()
    async def scans(self, request: Request, current: Page) -> Response:
        code = await self.service.codes.get(_code_id(request))
        return await self._scans(request, current, code)

    @page()
    async def all_scans(self, request: Request, current: Page) -> Response:
        return await self._scans(request, current, None)

    async def _scans(self, request: Request, current: Page, code: schemas.QRCode | None) -> Response:
        given = {
            k: v.strip()
            for k, v in request.query_params.items()
            if k in ("from", "to", "interval", "tz") and v.strip()
        }
        errors: dict[str, str] = {}
        try:
            query = forms.validated(schemas.ScanQuery, given, context={})
        except FormErrors as exc:
            errors = {("from" if k == "from_" else k): v for k, v in exc.errors.items()}
            query = schemas.ScanQuery()
        code_id = code.id if code else None
        try:
            report = await self.service.analytics.report(code_id, query)
        except InvalidValue as exc:  # a range the report cannot cut into buckets
            errors[exc.field] = exc.reason
            report = await self.service.analytics.report(code_id, schemas.ScanQuery())
        series = {
            "start": [int(b.start.timestamp()) for b in report.series],
            "people": [b.people for b in report.series],
            "bots": [b.bots for b in report.series],
            "unique": [b.unique for b in report.series],
        }
        csv_query = urlencode(
            {
                "from": report.from_.astimezone(UTC).isoformat().replace("+00:00", "Z"),
                "to": report.to.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            }
        )
        return self.render(
            request,
            current,
            "scans.html",
            code=code,
            report=report,
            given=given,
            errors=errors,
            series=json.dumps(series),
            zones=self._zones,
            csv_query=csv_query,
        )


def _sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _code_id(request: Request) -> str:
    code_id: str = request.path_params["code_id"]
    if not is_well_formed(code_id):
        raise NotFound("no QR code with that id")
    return code_id


def _local_target(value: str | None) -> str:
    """Where to go after signing in: a console path of this service, nothing else."""
    if (
        value
        and value.startswith("/console/")
        and "//" not in value
        and "\\" not in value
        and len(value) < 2000
    ):
        return value
    return "/console/"


def _reason(error: ServiceError | DomainError, field: str) -> str:
    return error.message.removeprefix(f"{field}: ")


def _status_of(error: DomainError) -> int:
    """The status of the page that shows a domain error."""
    if isinstance(error, CodeNotFound | LogoNotFound):
        return 404
    if isinstance(error, SlugTaken):
        return 409
    if isinstance(error, Unreadable):
        return 400
    if isinstance(error, TryAgain):
        return 503
    return 422  # InvalidValue, BulkRefused


def _error_title(status: int) -> str:
    return {
        400: "Bad request",
        403: "Refused",
        404: "Not found",
        409: "Conflict",
        413: "Too large",
        415: "Unsupported file",
        422: "Not accepted",
        503: "Unavailable",
    }.get(status, "Error")


def _colour(value: str | None, default: str) -> str:
    digits = (value or default).removeprefix("#").lower()
    if len(digits) == 3:
        digits = "".join(ch * 2 for ch in digits)
    if len(digits) != 6 or any(ch not in "0123456789abcdef" for ch in digits):
        return default
    return "#" + digits


def _moment(value: datetime | None) -> str:
    if value is None:
        return "—"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _as_form(values: dict[str, Any]) -> dict[str, str]:
    """Edit values as the form posts them (a checkbox that is on says "on", one that is off nothing)."""
    posted = {k: v for k, v in values.items() if isinstance(v, str)}
    posted.update({k: "on" for k, v in values.items() if v is True})
    return posted


def _shown(value: Any) -> str:
    """A value from the history as the API spells it (true, not True; a list by commas)."""
    if value is None or value == []:
        return "—"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ", ".join(str(item) for item in value)
    return str(value)


def _edit_values(code: schemas.QRCode) -> dict[str, Any]:
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


def _csv_preview(data: bytes) -> list[tuple[int, dict[str, str]]] | None:
    """The uploaded rows as the page shows them beside their errors (numbered as the bulk endpoint
    numbers them), or None for a file that is no CSV (its error says why)."""
    try:
        reader = csv.reader(io.StringIO(data.decode("utf-8-sig"), newline=""), strict=True)
        header = [cell.strip().lower() for cell in next(reader, [])]
        rows = []
        for number, record in enumerate(reader, start=1):
            if not record or not any(cell.strip() for cell in record):
                continue
            rows.append((number, dict(zip(header, record, strict=False))))
            if len(rows) >= CSV_ROWS_SHOWN:
                break
        return rows
    except (UnicodeDecodeError, csv.Error):
        return None
