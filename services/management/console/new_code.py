"""The console's new code page: one code from a form, or many from a CSV file (all or none, each
row's problems shown beside it)."""

from __future__ import annotations

import asyncio
import csv
import io

from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from services.management import schemas
from services.management.auth.roles import Role
from services.management.console import forms
from services.management.console.forms import FormErrors
from services.management.console.frame import Page, Pages, page, reason
from services.management.errors import BulkRefused, InvalidValue, SlugTaken, Unreadable

CSV_ROWS_SHOWN = 1000


class NewCode(Pages):
    def routes(self) -> list[BaseRoute]:
        return [
            Route("/console/new", self.new_code, methods=["GET", "HEAD"]),
            Route("/console/new", self.create_code, methods=["POST"]),
            Route("/console/bulk", self.create_in_bulk, methods=["POST"]),
        ]

    @page(role=Role.editor)
    async def new_code(self, request: Request, current: Page) -> Response:
        return self.render(
            request,
            current,
            "new.html",
            values={},
            errors={},
            rows=None,
            problems={},
            total_rows=0,
            bulk_error=None,
        )

    @page(role=Role.editor, write=True)
    async def create_code(self, request: Request, current: Page) -> Response:
        form = current.posted
        values = {**forms.code_values(form, new=True), "design": forms.design_values(form)}
        try:
            new = forms.validated(schemas.NewQRCode, values, context=self.service.context)
            created = await self.service.codes.create(new, current.identity)
        except FormErrors as exc:
            return self._new_again(request, current, form, exc.errors)
        except (SlugTaken, InvalidValue) as exc:  # beside the field the error names
            field = exc.field or "target_url"
            return self._new_again(request, current, form, {field: reason(exc, field)})
        # A code made switched off, or with its expiry already past, says so at once.
        notice = "created" if created.state in ("on", "static") else "created-stopped"
        return RedirectResponse(f"/console/codes/{created.id}?notice={notice}", status_code=303)

    def _new_again(self, request: Request, current: Page, form: FormData, errors: dict[str, str]) -> Response:
        return self.render(
            request,
            current,
            "new.html",
            status_code=422,
            values=forms.typed(form),
            errors=errors,
            rows=None,
            problems={},
            total_rows=0,
            bulk_error=None,
        )

    @page(role=Role.editor, write=True, upload="csv")
    async def create_in_bulk(self, request: Request, current: Page) -> Response:
        upload = current.posted.get("csv")
        data = await upload.read() if isinstance(upload, UploadFile) else b""
        if not data.strip():
            return self._bulk_again(request, current, None, {}, "Choose a CSV file with a header line.")
        try:
            result = await self.service.bulk.create(
                "text/csv", data, partial=False, identity=current.identity
            )
        except BulkRefused as exc:
            problems: dict[int, list[str]] = {}
            for error in exc.errors:
                problems.setdefault(error.row, []).append(f"{error.field}: {error.message}")
            # Only for a refused file, off the loop: the rows with problems, beside them.
            rows, total = await asyncio.to_thread(_csv_rows, data, set(problems))
            return self._bulk_again(request, current, rows, problems, exc.message, total)
        except (InvalidValue, Unreadable) as exc:  # the file itself: no row is to blame
            return self._bulk_again(request, current, None, {}, exc.message)
        return self.render(request, current, "bulk_done.html", created=result.created)

    def _bulk_again(
        self,
        request: Request,
        current: Page,
        rows: list[tuple[int, int, dict[str, str]]] | None,
        problems: dict[int, list[str]],
        message: str,
        total: int = 0,
    ) -> Response:
        return self.render(
            request,
            current,
            "new.html",
            status_code=422,
            values={},
            errors={},
            rows=rows,
            problems=problems,
            total_rows=total,
            bulk_error=message,
        )


def _csv_rows(data: bytes, wanted: set[int]) -> tuple[list[tuple[int, int, dict[str, str]]], int]:
    """The rows ``wanted`` (numbered as the bulk endpoint numbers them) as the page shows them
    beside their errors: each one's number, the file's line it ends on (the header is line 1) and
    its cells; and how many rows the file holds."""
    rows: list[tuple[int, int, dict[str, str]]] = []
    number = 0
    try:
        reader = csv.reader(io.StringIO(data.decode("utf-8-sig"), newline=""), strict=True)
        header = [cell.strip().lower() for cell in next(reader, [])]
        for number, record in enumerate(reader, start=1):
            if number in wanted and len(rows) < CSV_ROWS_SHOWN:
                rows.append((number, reader.line_num, dict(zip(header, record, strict=False))))
    except (UnicodeDecodeError, csv.Error):
        pass  # the rows read so far; the bulk endpoint read the file, this only shows it
    return rows, number
