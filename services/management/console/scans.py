"""The console's scan statistics: a code's (a deleted one's too: its scans stay), or every code's
together with their totals by tag, over a range in a time zone's buckets (uPlot draws the series),
with presets for the usual ranges, a view of people alone, and the raw scans' CSV a link away. A
refused range answers 422 with what was asked kept in its fields, and says what is shown instead."""

from __future__ import annotations

import json
import zoneinfo
from datetime import UTC, date, datetime, timedelta
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from services.management import limits, schemas
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
        # A deleted code's scans stay, and so does their page.
        code = await self.service.codes.get_even_deleted(code_id(request), current.identity)
        return await self._scans(request, current, code)

    @page(role=Role.viewer)
    async def all_scans(self, request: Request, current: Page) -> Response:
        return await self._scans(request, current, None)

    async def _scans(self, request: Request, current: Page, code: schemas.QRCode | None) -> Response:
        given = {k: v.strip() for k, v in request.query_params.items() if k in RANGE_FIELDS and v.strip()}
        people_only = request.query_params.get("people") == "only"
        errors: dict[str, str] = {}
        code_id = code.id if code else None
        try:
            query = forms.validated(schemas.ScanQuery, given, context={})
            report = await self.service.analytics.report(code_id, query, current.identity)
        except (FormErrors, InvalidValue) as exc:
            found = exc.errors if isinstance(exc, FormErrors) else {exc.field: exc.reason}
            errors = {("from" if k == "from_" else k): v for k, v in found.items()}
            # Shown instead: the default range, in the zone asked for when that one is right.
            instead = {"tz": given["tz"]} if "tz" in given and "tz" not in errors else {}
            try:
                fallback = forms.validated(schemas.ScanQuery, instead, context={})
            except FormErrors:
                fallback = schemas.ScanQuery()
            report = await self.service.analytics.report(code_id, fallback, current.identity)
        series = {
            "start": [int(b.start.timestamp()) for b in report.series],
            "people": [b.people for b in report.series],
            "unique": [b.unique for b in report.series],
            **({} if people_only else {"bots": [b.bots for b in report.series]}),
        }
        csv_query = urlencode(
            {
                "from": report.from_.astimezone(UTC).isoformat().replace("+00:00", "Z"),
                "to": report.to.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            }
        )
        # The fields say the range shown when they were left empty; a refused value stays as typed.
        shown = {
            "from": report.from_.strftime("%Y-%m-%d"),
            "to": report.to.strftime("%Y-%m-%d"),
            "interval": report.interval,
            "tz": report.tz,
        }
        values = {**shown, **given} if errors else {**given, **shown}
        return self.render(
            request,
            current,
            "scans.html",
            status_code=422 if errors else 200,
            code=code,
            report=report,
            values=values,
            errors=errors,
            people_only=people_only,
            presets=_presets(report, given, people_only),
            series=json.dumps(series),
            zones=self._zones,
            csv_query=csv_query,
        )


RANGE_FIELDS = ("from", "to", "interval", "tz")
PRESET_DAYS = (7, 30, 90)


def _presets(report: schemas.ScanReport, given: dict[str, str], people_only: bool) -> list[tuple[str, str]]:
    """Links to the last 7, 30 and 90 days and to this year (to today), in the zone shown."""
    today = datetime.now(ZoneInfo(report.tz)).date()
    kept = {"tz": report.tz, **({"people": "only"} if people_only else {})}
    starts = [(f"Last {days} days", today - timedelta(days=days - 1)) for days in PRESET_DAYS]
    starts.append(("This year", date(today.year, 1, 1)))
    links = []
    for label, start in starts:
        long = today - start >= timedelta(days=limits.MAX_HOURLY_DAYS)
        interval = "day" if given.get("interval", "day") == "hour" and long else given.get("interval", "day")
        link = {"from": start.isoformat(), "interval": interval, **kept}
        links.append((label, "?" + urlencode(link)))
    return links
