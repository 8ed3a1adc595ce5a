"""The console's design panel (templates/_design.html): a code's saved design with its live preview, on
the code's page (saved on its own) and on the new code's page (created with the code).

The preview is the real image, checked by decoding like any other: the code's own on its page, a
sample code's on the new code's page (no code exists yet to draw)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from services.management.auth.roles import Role
from services.management.console import forms
from services.management.console.forms import FormErrors
from services.management.console.frame import Page, Pages, code_id, page
from services.management.errors import InvalidValue
from services.management.rendering import ImageOptions, RenderRefused, render_svg
from services.management.schemas.bodies import CodeDesign
from shared.ids import is_well_formed

SAMPLE_SIZE = 280
SAMPLE_PATH = "/r/preview"  # what the new code's page previews: a short link of the same length


def _checked(form: Mapping[str, Any]) -> tuple[dict[str, Any] | None, dict[str, str]]:
    """The posted design, checked as the API checks it, and the errors by option."""
    design = forms.design_values(form)
    if design is None:
        return None, {}
    try:
        checked = forms.validated(CodeDesign, design, context={})
    except FormErrors as exc:
        return design, exc.errors
    return checked.model_dump(exclude_none=True), {}


class DesignPanel(Pages):
    def routes(self) -> list[BaseRoute]:
        return [
            Route("/console/design/preview", self.preview, methods=["GET", "HEAD"]),
            Route("/console/design/sample.svg", self.sample, methods=["GET", "HEAD"]),
            Route("/console/codes/{code_id}/design", self.design_page, methods=["GET", "HEAD"]),
            Route("/console/codes/{code_id}/design", self.save, methods=["POST"]),
        ]

    @page(role=Role.viewer)
    async def preview(self, request: Request, current: Page) -> Response:
        """The panel's preview for the options as they stand (htmx swaps it in)."""
        design, errors = _checked(request.query_params)
        code = request.query_params.get("code") or None
        if code is not None and not is_well_formed(code):
            code = None
        return self.render(
            request, current, "_design.html", design_preview_only=True, **preview(design, errors, code)
        )

    @page(role=Role.viewer)
    async def sample(self, request: Request, current: Page) -> Response:
        """A sample code in the posted design, for the new code's page."""
        design, errors = _checked(request.query_params)
        if errors:
            return Response(status_code=422)
        options = ImageOptions(size=SAMPLE_SIZE).for_code(design)
        payload = self.service.settings.public_base_url + SAMPLE_PATH
        try:
            svg = await anyio.to_thread.run_sync(render_svg, payload, options)
        except (RenderRefused, InvalidValue):
            return Response(status_code=422)
        return Response(svg, media_type="image/svg+xml", headers={"Cache-Control": "private, no-cache"})

    @page(role=Role.editor, write=True)
    async def save(self, request: Request, current: Page) -> Response:
        code = code_id(request)
        form = current.posted
        design, errors = (None, {}) if form.get("remove") else _checked(form)
        if not errors:
            try:
                await self.service.codes.update(code, {"design": design}, current.identity)
            except InvalidValue as exc:
                errors = {exc.field: exc.reason}
        if errors:  # the page again, the panel as it was posted with its errors
            return await self._page_again(request, current, code, design or {}, errors)
        return RedirectResponse(f"/console/codes/{code}?notice=saved", status_code=303)

    @page(role=Role.viewer)
    async def design_page(self, request: Request, current: Page) -> Response:
        """The panel on a page of its own (the code's page shows it too)."""
        code = await self.service.codes.get(code_id(request), current.identity)
        return self.render(request, current, "design.html", code=code)

    async def _page_again(
        self, request: Request, current: Page, code_id: str, design: dict[str, Any], errors: dict[str, str]
    ) -> Response:
        code = await self.service.codes.get(code_id, current.identity)
        return self.render(
            request,
            current,
            "design.html",
            status_code=422,
            code=code,
            design_values=design,
            design_errors=errors,
        )


def preview(design: dict[str, Any] | None, errors: dict[str, str], code: str | None) -> dict[str, Any]:
    """What the panel's preview shows: the image's address, or why there is none."""
    query = {"modules": "square"} if design is None else {**design}  # plain: named, not the saved design
    if isinstance(query.get("frame_url"), bool):
        query["frame_url"] = "true" if query["frame_url"] else "false"
    if code is not None:
        source = f"/api/v1/qr/{code}/image.svg?{urlencode({**query, 'size': SAMPLE_SIZE})}"
    else:
        source = f"/console/design/sample.svg?{urlencode({_field(k): v for k, v in query.items()})}"
    return {"design_errors": errors, "design_source": None if errors else source, "design_code": code}


def _field(option: str) -> str:
    """The panel's field of a design option (its colours are named apart)."""
    return next((field for field, name in forms.DESIGN_COLOURS.items() if name == option), option)
