"""Label sheets as PDF: a grid of codes per page, each drawn in its design as vector shapes (plain
squares, or the shapes of :mod:`services.management.design`, checked by decoding a raster of them
first), its title and short link printed beneath in a TrueType font embedded in the file (Bitstream
Vera, shipped with ReportLab), cut marks in the margins at every row and column.

Sizes are the images' (``image.svg?size_mm=``): ``size_mm`` is the code with its quiet zone, which
is its own (each label's box holds its whole code; a neighbour's never reaches into it). The grid
spreads evenly over the page inside a 10 mm margin: by default as many labels as fit, with at least
``GUTTER_MM`` between codes.
"""

from __future__ import annotations

import functools
import io
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from reportlab.lib.colors import HexColor
from reportlab.lib.pagesizes import A4, LETTER
from reportlab.lib.utils import ImageReader
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen import canvas

from services.management import contents, design
from services.management.design import Drawing
from services.management.errors import InvalidValue
from services.management.logos import Logo
from services.management.rendering import (
    ImageOptions,
    RenderRefused,
    check_decodes,
    check_margin,
    dark_runs,
    drawing,
)
from services.management.schemas import QRCode

log = logging.getLogger(__name__)

MM = 72 / 25.4  # points per millimetre
CHECK_SCALE = 4  # pixels per module of the raster a designed label is checked through
PAPERS = {"a4": A4, "letter": LETTER}
MARGIN_MM = 10.0
GUTTER_MM = 4.0  # between neighbouring codes, at least, when the grid is chosen here
TEXT_MM = 8.0  # beneath each code: two lines of text
FONT = "Vera"
FONT_SIZE = 7.0
SMALLEST_FONT = 4.5
MARK_MM = 5.0  # cut marks: this long, in the margin
MARK_GAP_MM = 1.5  # and this far from the grid


@functools.cache
def _font() -> str:
    pdfmetrics.registerFont(TTFont(FONT, "Vera.ttf"))  # found in reportlab/fonts
    return FONT


@dataclass(frozen=True)
class Sheet:
    paper: str
    size_mm: float
    columns: int
    rows: int

    @property
    def page(self) -> tuple[float, float]:
        width, height = PAPERS[self.paper]
        return width / MM, height / MM

    @property
    def pitch(self) -> tuple[float, float]:
        """Millimetres from one label's box to the next."""
        width, height = self.page
        return (width - 2 * MARGIN_MM) / self.columns, (height - 2 * MARGIN_MM) / self.rows

    @property
    def per_page(self) -> int:
        return self.columns * self.rows


def sheet(paper: str, size_mm: float, columns: int | None, rows: int | None) -> Sheet:
    """The grid for these choices; :class:`InvalidValue` naming what does not fit."""
    width, height = (side / MM - 2 * MARGIN_MM for side in PAPERS[paper])
    label_height = size_mm + TEXT_MM
    fits_across = int((width + GUTTER_MM) // (size_mm + GUTTER_MM))
    fits_down = int((height + GUTTER_MM) // (label_height + GUTTER_MM))
    if fits_across < 1 or fits_down < 1:
        raise InvalidValue("size_mm", f"a {size_mm:g} mm code with its text does not fit on {paper} paper")
    if columns is not None and width / columns < size_mm:
        raise InvalidValue("columns", f"{columns} codes of {size_mm:g} mm do not fit across {paper} paper")
    if rows is not None and height / rows < label_height:
        raise InvalidValue(
            "rows", f"{rows} rows of {size_mm:g} mm codes and their text do not fit down {paper} paper"
        )
    return Sheet(paper, size_mm, columns or fits_across, rows or fits_down)


def _fitted(text: str, width_pt: float) -> tuple[str, float]:
    """``text`` at the largest size from FONT_SIZE down that fits ``width_pt``, else cut with …"""
    size = FONT_SIZE
    while size > SMALLEST_FONT and pdfmetrics.stringWidth(text, FONT, size) > width_pt:
        size -= 0.5
    if pdfmetrics.stringWidth(text, FONT, size) <= width_pt:
        return text, size
    while text and pdfmetrics.stringWidth(text + "…", FONT, size) > width_pt:
        text = text[:-1]
    return text + "…", size


class Sheets:
    """A PDF of label sheets drawn a page at a time, so that an export can stop between pages (and
    between labels: ``between_labels`` is called before each, and may raise to stop)."""

    def __init__(
        self, layout: Sheet, options: ImageOptions, *, between_labels: Callable[[], None] | None = None
    ) -> None:
        _font()
        self.layout = layout
        self.options = options
        self.between_labels = between_labels
        self.labels = 0
        self._buffer = io.BytesIO()
        page_width, page_height = (side * MM for side in layout.page)
        self._canvas = canvas.Canvas(
            self._buffer,
            pagesize=(page_width, page_height),
            pageCompression=1,
            initialFontName=FONT,  # else Helvetica is named in the file, a font it does not embed
            initialFontSize=FONT_SIZE,
        )
        self._canvas.setTitle("QR codes")
        self._canvas.setCreator("QR service")

    def page(self, codes: Sequence[QRCode], logos: Mapping[str, Logo]) -> None:
        """One page of up to ``layout.per_page`` codes."""
        layout = self.layout
        pitch_x, pitch_y = layout.pitch
        _cut_marks(self._canvas, layout)
        for index, code in enumerate(codes[: layout.per_page]):
            if self.between_labels is not None:
                self.between_labels()
            column, row = index % layout.columns, index // layout.columns
            left = MARGIN_MM + column * pitch_x
            top = MARGIN_MM + row * pitch_y  # from the page's top edge
            try:
                _label(self._canvas, code, logos.get(code.logo_sha256 or ""), layout, self.options, left, top)
            except InvalidValue as exc:  # not drawable in these options (too long at H, say): left blank
                log.error("label left blank", extra={"code_id": code.id, "reason": str(exc)})
            self.labels += 1
        self._canvas.showPage()

    def finish(self) -> bytes:
        """The file (one page at least, if only to say there is nothing)."""
        if not self.labels:
            page_height = self.layout.page[1] * MM
            self._canvas.setFont(FONT, 10)
            self._canvas.drawString(
                MARGIN_MM * MM, page_height - 2 * MARGIN_MM * MM, "No codes were selected."
            )
            self._canvas.showPage()
        self._canvas.save()
        return self._buffer.getvalue()


def _label(
    pdf_canvas: canvas.Canvas,
    code: QRCode,
    logo: Logo | None,
    layout: Sheet,
    options: ImageOptions,
    left_mm: float,
    top_mm: float,
) -> None:
    pitch_x, pitch_y = layout.pitch
    page_height = layout.page[1]
    size = layout.size_mm
    payload = contents.encoded_by(code)
    drawn = options.for_code(code.design).for_logo(logo is not None)
    x0 = (left_mm + (pitch_x - size) / 2) * MM
    spare = pitch_y - size - TEXT_MM
    y_top = (page_height - top_mm - spare / 2) * MM  # the code's top edge, in points from the bottom
    art = _checked_art(payload, drawn, logo)
    if art is not None:
        # The design with its frame fills the label's box: its widest side is size_mm.
        unit = size * MM / max(art.width, art.height)
        design.draw_pdf(pdf_canvas, art, x0 + (size * MM - art.width * unit) / 2, y_top, unit, logo)
    else:
        _plain(pdf_canvas, drawing(payload, drawn, logo), size, x0, y_top, logo)
    width = (pitch_x - 1) * MM
    centre = x0 + size * MM / 2
    baseline = y_top - size * MM - 3.2 * MM
    for text in (code.title or "", "" if code.static else code.short_url):  # a static code has no link
        if text:
            shown, font_size = _fitted(text, width)
            pdf_canvas.setFont(FONT, font_size)
            pdf_canvas.drawCentredString(centre, baseline, shown)
        baseline -= 3.2 * MM


def _checked_art(payload: str, options: ImageOptions, logo: Logo | None) -> design.Art | None:
    """A designed label's shapes, once a raster of them decodes to ``payload``; ``None`` for a plain
    code, and for a design that does not read back (drawn plain instead: a printed sheet must scan)."""
    if options.design.plain:
        return None
    draw = drawing(payload, options, logo)
    art = design.art(draw, options.design, payload)
    try:
        check_decodes(
            design.raster_art(art, CHECK_SCALE, logo),
            payload,
            margin=check_margin(draw, CHECK_SCALE),
            ground=draw.bg,
        )
    except RenderRefused as exc:
        log.error("label drawn plain: its design does not scan", extra={"reason": str(exc)})
        return None
    return art


def _plain(
    pdf_canvas: canvas.Canvas, draw: Drawing, size: float, x0: float, y_top: float, logo: Logo | None
) -> None:
    """Square modules in one colour, as every label was drawn before designs."""
    module = size / draw.width  # mm
    pdf_canvas.setFillColor(HexColor(draw.bg))
    pdf_canvas.rect(x0, y_top - size * MM, size * MM, size * MM, stroke=0, fill=1)  # its own quiet zone
    pdf_canvas.setFillColor(HexColor(draw.fg))
    path = pdf_canvas.beginPath()
    for row, column, length in dark_runs(draw):
        path.rect(
            x0 + column * module * MM, y_top - (row + 1) * module * MM, length * module * MM, module * MM
        )
    pdf_canvas.drawPath(path, stroke=0, fill=1)
    if logo is not None:
        corner = draw.pad_origin() + 1
        side = (draw.pad - 2) * module * MM
        pdf_canvas.drawImage(
            ImageReader(io.BytesIO(logo.png)),
            x0 + corner * module * MM,
            y_top - corner * module * MM - side,
            side,
            side,
            preserveAspectRatio=True,
            mask="auto",
        )
    pdf_canvas.setFillColorRGB(0, 0, 0)


def _cut_marks(pdf_canvas: canvas.Canvas, layout: Sheet) -> None:
    """Short lines in the margins, in line with every boundary between labels and the grid's edges."""
    width, height = layout.page
    pitch_x, pitch_y = layout.pitch
    near, far = MARGIN_MM - MARK_GAP_MM - MARK_MM, MARGIN_MM - MARK_GAP_MM  # from the page's edge
    pdf_canvas.setLineWidth(0.25)
    pdf_canvas.setStrokeColorRGB(0, 0, 0)
    for n in range(layout.columns + 1):
        x = (MARGIN_MM + n * pitch_x) * MM
        pdf_canvas.line(x, near * MM, x, far * MM)
        pdf_canvas.line(x, (height - far) * MM, x, (height - near) * MM)
    for n in range(layout.rows + 1):
        y = (height - MARGIN_MM - n * pitch_y) * MM
        pdf_canvas.line(near * MM, y, far * MM, y)
        pdf_canvas.line((width - far) * MM, y, (width - near) * MM, y)
