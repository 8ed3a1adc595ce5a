"""The console's list of codes: searched, filtered by tag, in an order, a page at a time; and a
selection of them exported (through the API's own export files)."""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from services.management import limits, schemas
from services.management.auth.roles import Role
from services.management.codes import Filters
from services.management.console import forms
from services.management.console.forms import FormErrors
from services.management.console.frame import Page, Pages, page
from services.management.errors import InvalidValue
from shared.errors import BadRequest, InvalidField
from shared.ids import is_well_formed

PAGE_SIZE = 25
LIST_FIELDS = ("q", "tag", "order")  # what a list's link keeps
EXPORTS = {
    "zip-png": ("export.zip", {"format": "png"}),
    "zip-svg": ("export.zip", {"format": "svg"}),
    "pdf": ("export.pdf", {}),
}


class CodeList(Pages):
    def routes(self) -> list[BaseRoute]:
        return [
            Route("/console/", self.codes, methods=["GET", "HEAD"]),
            Route("/console/export", self.export, methods=["GET", "HEAD"]),
        ]

    @page(role=Role.viewer)
    async def codes(self, request: Request, current: Page) -> Response:
        values = {k: v for k, v in request.query_params.items() if k in (*LIST_FIELDS, "cursor") and v}
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
            listing = await self.service.codes.page(
                filters, current.identity, limit=query.limit, cursor=query.cursor
            )
        except InvalidValue:  # a cursor of the right form that names no place in the list
            errors["cursor"] = "is not a page of this list"
            values.pop("cursor", None)
            listing = await self.service.codes.page(filters, current.identity, limit=query.limit, cursor=None)
        tags = await self.service.codes.known_tags(current.identity)
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
            export_error=EXPORT_ERRORS.get(request.query_params.get("export", "")),
        )

    @page(role=Role.viewer)
    async def export(self, request: Request, current: Page) -> Response:
        """The selected codes, or every code with a tag, as the API's export file."""
        chosen = [value for value in request.query_params.getlist("id") if is_well_formed(value)]
        tag = request.query_params.get("tag", "").strip()
        kind = request.query_params.get("as", "")
        if kind not in EXPORTS:
            raise InvalidField("as", f"must be one of {', '.join(EXPORTS)}")
        path, extra = EXPORTS[kind]
        if tag:
            if len(tag) > limits.MAX_TAG:
                raise InvalidField("tag", f"must be at most {limits.MAX_TAG} characters")
            return RedirectResponse(f"/api/v1/qr/{path}?{urlencode({**extra, 'tag': tag})}", status_code=303)
        if not chosen:  # back to the list as it was, saying what to do
            shown = {k: v for k in LIST_FIELDS if (v := request.query_params.get(f"list_{k}", "").strip())}
            back = urlencode({**shown, "export": "none"})
            return RedirectResponse(f"/console/?{back}", status_code=303)
        if len(chosen) > limits.MAX_SELECTED:
            raise BadRequest(f"select at most {limits.MAX_SELECTED} codes at once")
        query = urlencode({**extra, "ids": ",".join(dict.fromkeys(chosen))})
        return RedirectResponse(f"/api/v1/qr/{path}?{query}", status_code=303)


# What the list says after an export it could not make (fixed texts, chosen by a query parameter).
EXPORT_ERRORS = {"none": "Nothing was exported: select codes first, or choose a tag under Export."}
