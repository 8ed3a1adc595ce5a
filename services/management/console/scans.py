"""The console's scan statistics: a code's, or every code's together, over a range in a time zone's
buckets (uPlot draws the series), with the raw scans' CSV a link away."""

from __future__ import annotations

import json
import zoneinfo
from datetime import UTC
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from services.management import schemas
from services.management.auth.roles import Role
from services.management.console import forms
from services.management.console.forms import FormErrors
from services.management.console.frame import Frame, Page, Pages, code_id, page
from services.management.errors import InvalidValue
from services.management.service import Service


class Scans(Pages):
    def __init__(self, frame: Frame, service: Service) -> None:
        super().__init__(frame, service)
        self._zones = sorted(zoneinfo.available_timezones() | {"UTC"})

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/console/scans", self.all_scans, methods=["GET", "HEAD"]),
            Route("/console/codes/{code_id}/scans", self.scans, methods=["GET", "HEAD"]),
        ]

    @page(role=Role.viewer)
    async def scans(self, request: Request, current: Page) -> Response:
        code = await self.service.codes.get(code_id(request), current.identity)
        return await self._scans(request, current, code)

    @page(role=Role.viewer)
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
            report = await self.service.analytics.report(code_id, query, current.identity)
        except InvalidValue as exc:  # a range the report cannot cut into buckets
            errors[exc.field] = exc.reason
            report = await self.service.analytics.report(code_id, schemas.ScanQuery(), current.identity)
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
