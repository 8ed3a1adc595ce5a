"""The frame every console page shares: its session (sign-in first when tokens are on or people
sign in through the identity provider), who is calling (for a person: their subject, e-mail and the
role their session carries) and whether their role allows the page (each page declares the role it
needs, see :func:`page`; a page without one cannot be made; 403 otherwise, and the templates hide
what the role cannot do), the forms it posts (read within their limit, checked against cross-site
forgery, see :mod:`services.management.auth.sessions`), the templates, the errors shown as a page,
and the headers on every answer.

Every answer carries a strict content security policy (nothing from elsewhere, no inline script or
style), ``X-Frame-Options: DENY`` and ``Cache-Control: no-store``; Jinja2 escapes every value.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlencode
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jinja2
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates

from services.management import limits
from services.management.auth.door import as_person, as_token
from services.management.auth.identity import Identity, identity_of
from services.management.auth.oidc import Provider
from services.management.auth.roles import Role
from services.management.auth.sessions import LIFETIME_SECONDS, Session, Sessions, cookie_name
from services.management.console import contents as console_contents
from services.management.console import forms
from services.management.errors import (
    CodeNotFound,
    DomainError,
    LogoNotFound,
    NotPermitted,
    SlugTaken,
    TryAgain,
    Unreadable,
)
from services.management.inputs import read_body
from services.management.service import Service
from shared.errors import BadRequest, Forbidden, NotFound, ServiceError
from shared.ids import is_well_formed

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
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
    "created-stopped": "The code was created; it does not redirect yet: it answers 410 (or its fallback "
    "URL) as it stands.",
    "saved": "The changes were saved.",
    "enabled": "The code is switched on: it redirects again.",
    "disabled": "The code is switched off: it answers 410 (or its fallback URL).",
    "saved-stopped": "The changes were saved, and the code no longer redirects: printed copies answer 410 "
    "(or its fallback URL) from now on.",
    "deleted": "The code was deleted.",
    "logo": "The logo was saved; the images carry it now.",
    "logo-removed": "The logo was removed.",
    "signed-out": "You are signed out.",
}
# A code's state (the API's "state", computed in services/management/codes.py) in words: in a list,
# as a page's headline, and what /r/{id} then does.
STATES = {
    "on": ("On", "Switched on", "it redirects to"),
    "off": ("Off", "Switched off", "it answers 410"),
    "expired": ("Expired", "Expired", "it answers 410"),
    "not_yet": ("Not yet", "Not started yet", "it answers 410"),
    "static": ("Static", "Static", "its images carry the content itself; it has no short link"),
    "deleted": ("Deleted", "Deleted", "it answers 404; its scans stay"),
}
ORDERS = {"-created_at": "Newest first", "created_at": "Oldest first", "-scan_count": "Most scanned"}
# What a form may upload, which sets how large it may be: nothing (MAX_BODY_BYTES), a CSV of codes
# (BULK_MAX_BODY_BYTES), a logo (LOGO_MAX_BYTES and the multipart around it).
Upload = Literal["csv", "logo"] | None


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


class Frame:
    def __init__(self, service: Service, sessions: Sessions, oidc: Provider | None = None) -> None:
        self.settings = service.settings
        self.sessions = sessions
        self.oidc = oidc  # people sign in through this identity provider (OIDC_ISSUER)
        environment = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        environment.globals.update(
            orders=ORDERS,
            ecc_levels=limits.ECC_LEVELS,
            limits=limits,
            code_form=forms.CODE_FORM,
            content_panels=console_contents.panels(),  # templates/_content.html
            csv_columns=forms.csv_columns(),
        )
        environment.globals.update(states=STATES, field_labels=FIELD_LABELS)
        environment.filters["moment"] = moment
        environment.filters["day"] = _day
        environment.filters["shown"] = _shown
        environment.filters["in_form_order"] = _in_form_order
        # What a code of a kind other than url holds, in words (its page, its image's alt text).
        environment.globals.update(
            content_headline=console_contents.headline,
            content_labels=console_contents.LABELS,
            content_rows=console_contents.described,
        )
        self.templates = Jinja2Templates(env=environment)

    async def serve(
        self,
        request: Request,
        handler: Callable[[Request, Page], Awaitable[Response]],
        *,
        role: Role,
        write: bool,
        upload: Upload = None,
    ) -> Response:
        """``handler``'s answer, within the frame (see the module's docstring), for a caller whose
        role allows ``role``."""
        try:
            session = await self.sessions.from_scope(request.scope)
        except DomainError as exc:  # the sign-outs cannot be read
            return self.error_page(request, None, exc)
        new_cookie = None
        if session is None and not self.sessions.sign_in_required and not write:
            session, new_cookie = self.sessions.issue()
        if session is None:
            if write:
                return self.refused(
                    request,
                    None,
                    "there is no session (it ended, or the form came from another site). Open the page again",
                )
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/console/sign-in?{urlencode({'next': target})}", status_code=303)
        identity = self.caller(request, session)
        current = Page(
            request, session, self.sessions.csrf_token(session), identity.actor, identity, new_cookie
        )
        form: FormData | None = None
        try:
            if not identity.role.allows(role):
                # Before the form is read: a forged post of a role too low gets no further.
                raise Forbidden(
                    f"this needs the {role.value} role; you are signed in as {identity.role.value}"
                )
            if write:
                form = await self.form(request, upload)
                reason = self.sessions.forged(request.headers, session, forms.text(form, "csrf") or None)
                if reason is not None:
                    log.warning("console form refused", extra={"reason": reason})
                    return self.refused(request, current, reason)
                current.form = form
            response = await handler(request, current)
        except (ServiceError, DomainError) as exc:
            response = self.error_page(request, current, exc)
        finally:
            if form is not None:
                await form.close()  # uploaded files' temporary files
        if current.new_cookie is not None:
            self.set_cookie(request, response, current.new_cookie)
        return response

    def caller(self, request: Request, session: Session) -> Identity:
        """The caller the operations are given: the session's token (the history's "by", as for a
        bearer token; its role and tags too), or the person signed in through the identity provider
        with the role their session carries."""
        identity = identity_of(request.scope)
        if session.person is not None:
            return as_person(identity, session)
        token = self.sessions.token_of(session)
        if token is None:
            return identity.signed_in(session, None)
        return replace(as_token(identity, token), session=session)

    def refused(self, request: Request, current: Page | None, reason: str) -> Response:
        """A form refused as possibly forged: 400, not 403 (at the edge, a 403 page is the allowlist's)."""
        return self.render(
            request,
            current,
            "error.html",
            status_code=400,
            title="Refused",
            message=f"This form was refused: {reason}.",
        )

    def error_page(self, request: Request, current: Page | None, exc: ServiceError | DomainError) -> Response:
        status = exc.status if isinstance(exc, ServiceError) else status_of(exc)
        return self.render(
            request,
            current,
            "error.html",
            status_code=status,
            title=_error_title(status),
            message=exc.message,
        )

    async def form(self, request: Request, upload: Upload = None) -> FormData:
        """The form the request posts, read within the limit of what it may upload."""
        if upload == "csv":
            limit = self.settings.bulk_max_body_bytes
        elif upload == "logo":
            limit = self.settings.logo_max_bytes + FORM_OVERHEAD
        else:
            limit = self.settings.max_body_bytes
        _, body = await read_body(
            request, accepted=("application/x-www-form-urlencoded", "multipart/form-data"), max_bytes=limit
        )
        request._body = body  # parsed from what was read, within the limit
        try:
            return await request.form(max_files=1, max_fields=50, max_part_size=len(body) + 1)
        except Exception as exc:  # python-multipart's refusals of a malformed body
            raise BadRequest(f"the form cannot be read: {type(exc).__name__}") from None

    def set_cookie(self, request: Request, response: Response, value: str) -> None:
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
        identity = current.identity if current else None
        frame = {
            "path": request.url.path,
            "csrf": current.csrf if current else "",
            "signed_in_as": current.signed_in_as if current else None,
            # The role shown in the header (with ADMIN_AUTH=identity), and what it may do.
            "role": identity.role.value if identity is not None and identity.kind != "network" else None,
            "may": functools.partial(_may, identity, not self.sessions.sign_in_required),
            "sign_in_required": self.sessions.sign_in_required,
            "notice": notice,
        }
        return self.templates.TemplateResponse(
            request, template, {**frame, **context}, status_code=status_code, headers=SECURITY_HEADERS
        )

    async def not_found(self, request: Request) -> Response:
        return self.error_page(request, None, NotFound("there is no such page in the console"))


class Pages:
    """A group of console pages: the frame they share and the operations they call."""

    def __init__(self, frame: Frame, service: Service) -> None:
        self.frame = frame
        self.service = service

    def render(
        self, request: Request, current: Page | None, template: str, *, status_code: int = 200, **context: Any
    ) -> Response:
        return self.frame.render(request, current, template, status_code=status_code, **context)


P = TypeVar("P", bound=Pages)
Handler = Callable[[P, Request, Page], Awaitable[Response]]
Endpoint = Callable[[P, Request], Awaitable[Response]]


def page(*, role: Role, write: bool = False, upload: Upload = None) -> Callable[[Handler[P]], Endpoint[P]]:
    """A console page for callers whose role allows ``role`` (required: a page without one cannot
    be made): served within the frame (the form it posts when ``write``, within the limit of its
    ``upload``), with the security headers on whatever it answers."""
    if not isinstance(role, Role):
        raise TypeError("a console page declares the role it needs: page(role=Role.viewer, ...)")

    def wrap(handler: Handler[P]) -> Endpoint[P]:
        @functools.wraps(handler)
        async def endpoint(self: P, request: Request) -> Response:
            bound = functools.partial(handler, self)
            response = await self.frame.serve(request, bound, role=role, write=write, upload=upload)
            response.headers.update(SECURITY_HEADERS)
            return response

        return endpoint

    return wrap


def code_id(request: Request) -> str:
    """The code the page's path names (404 for what cannot be an id)."""
    found: str = request.path_params["code_id"]
    if not is_well_formed(found):
        raise NotFound("no QR code with that id")
    return found


def reason(error: ServiceError | DomainError, field: str) -> str:
    """An error's message without the name of its field (shown beside that field)."""
    return error.message.removeprefix(f"{field}: ")


def status_of(error: DomainError) -> int:
    """The status of the page that shows a domain error."""
    if isinstance(error, CodeNotFound | LogoNotFound):
        return 404
    if isinstance(error, NotPermitted):
        return 403
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


def _may(identity: Identity | None, network: bool, role: str) -> bool:
    """Whether the caller's role allows what ``role`` may do (the templates hide the rest); on a
    page that knows no caller, whether the allowlist alone decides (ADMIN_AUTH=network)."""
    return identity.role.allows(Role(role)) if identity is not None else network


def moment(value: datetime | str | None, zone: str = "UTC") -> str:
    """Every time the console shows, in one format (2026-12-07 14:05), in the zone it names."""
    if isinstance(value, str):  # as the history records it
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return str(value)
    if value is None:
        return "—"
    try:
        where = ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        where, zone = ZoneInfo("UTC"), "UTC"
    return value.astimezone(where).strftime("%Y-%m-%d %H:%M ") + zone


def _day(value: datetime) -> str:
    return value.strftime("%Y-%m-%d")


# The history names each field as the form labels it; the fields the form does not hold, so.
FIELD_LABELS = {
    **{field.name: field.label for field in forms.CODE_FORM},
    "logo_sha256": "Logo",
    "deleted_at": "Deleted",
    "short_url": "Short URL",
}
_FORM_ORDER = {name: place for place, name in enumerate(FIELD_LABELS)}


def _in_form_order(changes: dict[str, Any]) -> list[tuple[str, Any]]:
    """A history entry's fields in the form's order (the rest after them, by name)."""
    return sorted(changes.items(), key=lambda item: (_FORM_ORDER.get(item[0], len(_FORM_ORDER)), item[0]))


def _shown(value: Any, field: str = "") -> str:
    """A value from the history as a person reads it (yes/no, a list by commas, a time in the
    console's format, a logo as there or not: its digest says nothing to a reader)."""
    if value is None or value == []:
        return "—"
    if field == "logo_sha256":
        return "a logo"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(str(item) for item in value)
    if isinstance(value, dict):  # a code's content: field by field
        return "; ".join(f"{label}: {text}" for label, text in console_contents.described(value)) or "—"
    if field in ("expires_at", "deleted_at"):
        return moment(str(value))
    return str(value)
