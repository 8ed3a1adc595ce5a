"""Designed codes: one geometry of shapes, drawn alike as PNG (Pillow), SVG (paths) and PDF (ReportLab).

A :class:`Design` says how a code looks beyond its colours: the data modules' shape, the finder
patterns' shape and colour, a gradient over the modules, and a frame with a call to action. :func:`art`
turns a module matrix and a design into shapes in module units on a canvas (the code with its quiet
zone, and the frame around it); the three outputs draw those same shapes, so a PNG, an SVG and a label
sheet of one design agree. The quiet zone is the code's own: the frame's art starts outside it.

The frame's text is set in DejaVu Sans Bold, shipped beside this module (services/management/fonts,
Bitstream Vera licence: free to redistribute and embed, with its notice): Pillow draws it in a PNG,
an SVG carries its glyphs as paths (a viewer needs no font) and a PDF embeds the font's subset.
"""

from __future__ import annotations

import functools
import io
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

from PIL import Image, ImageChops, ImageDraw, ImageFont, ImageOps

from services.management import limits
from services.management.errors import InvalidValue

if TYPE_CHECKING:
    from reportlab.pdfgen.canvas import Canvas

    from services.management.logos import Logo

# The options' names and bounds are stated once, in limits (the query models and the console read them).
MODULE_SHAPES: Final = limits.MODULE_SHAPES
FINDER_SHAPES: Final = limits.FINDER_SHAPES
GRADIENTS: Final = limits.GRADIENTS
FRAMES: Final = limits.FRAMES
FRAME_POSITIONS: Final = limits.FRAME_POSITIONS
MAX_FRAME_TEXT: Final = limits.MAX_FRAME_TEXT
DEFAULT_FRAME_TEXT: Final = limits.DEFAULT_FRAME_TEXT
MIN_FRAMED_BORDER: Final = limits.MIN_FRAMED_BORDER

FONT_FILE: Final = Path(__file__).parent / "fonts" / "DejaVuSans-Bold.ttf"
FONT_NAME: Final = "DejaVuSans-Bold"

# The geometry, in modules.
FRAME_WIDTH = 1.0  # the frame's stroke around the quiet zone
FRAME_RADIUS = 1.0
ROUNDED_MODULE = 0.3  # corner radius of a rounded module
DOT_DIAMETER = 0.88
GAP = 0.2  # between gapped modules


@dataclass(frozen=True)
class Design:
    """How a code is drawn beyond its two colours (the defaults draw the plain black squares)."""

    modules: str = "square"
    finder: str = "square"
    finder_fg: str | None = None  # the finder patterns' own colour; None: as the modules
    gradient: str | None = None  # None: the modules in fg alone
    fg2: str | None = None  # the gradient's second colour
    frame: str = "none"
    frame_text: str = DEFAULT_FRAME_TEXT
    frame_position: str = "below"
    frame_url: bool = False  # the short URL printed under the frame's text

    @property
    def plain(self) -> bool:
        """Drawn as the undesigned code: square modules and finders in one colour, no frame."""
        return (
            self.modules == "square"
            and self.finder == "square"
            and self.finder_fg is None
            and self.gradient is None
            and self.frame == "none"
        )

    def as_key(self) -> dict[str, Any]:
        return asdict(self)


PLAIN = Design()
DESIGN_NAMES = frozenset(each.name for each in fields(Design))


@dataclass(frozen=True)
class Drawing:
    """What both formats draw: dark modules on a ground, a border, and a logo on a quiet pad."""

    modules: tuple[tuple[bool, ...], ...]  # the symbol without its border
    border: int
    fg: str
    bg: str
    logo: Logo | None
    pad: int  # modules a side of the quiet square in the middle (0 without a logo)
    design: Design = PLAIN

    @property
    def width(self) -> int:
        """Modules a side, border included."""
        return len(self.modules) + 2 * self.border

    def pad_origin(self) -> int:
        """Module coordinate (border included) of the pad's top-left corner."""
        return self.border + (len(self.modules) - self.pad) // 2

    def is_dark(self, row: int, column: int) -> bool:
        """Whether the module at (row, column) of the symbol is drawn dark (the pad is clear)."""
        if self.pad:
            start = (len(self.modules) - self.pad) // 2
            if start <= row < start + self.pad and start <= column < start + self.pad:
                return False
        return self.modules[row][column]


@functools.cache
def _font_tables() -> tuple[dict[int, str], dict[str, tuple[int, int]], int, Any]:
    """The font's character map, advance widths, units per em and glyph set (read once)."""
    from fontTools.ttLib import TTFont  # only for a frame's text

    font = TTFont(str(FONT_FILE), lazy=True)
    cmap = font.getBestCmap()
    return cmap, font["hmtx"].metrics, font["head"].unitsPerEm, font.getGlyphSet()


def check_frame_text(text: str) -> None:
    """Refuse frame text the font cannot draw (every other rule is the query model's)."""
    cmap = _font_tables()[0]
    missing = sorted({ch for ch in text if ord(ch) not in cmap})
    if missing:
        shown = ", ".join(repr(ch) for ch in missing[:5])
        raise InvalidValue("frame_text", f"the frame's font (DejaVu Sans Bold) has no letter for {shown}")


def text_width(text: str) -> float:
    """The text's advance in ems, as Pillow, the SVG paths and the PDF set it (no kerning)."""
    cmap, metrics, units, _ = _font_tables()
    return sum(metrics[cmap[ord(ch)]][0] for ch in text if ord(ch) in cmap) / units


# -- the geometry -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shape:
    """A rectangle (``r``: its corners' radius) or a circle (``w`` its diameter), in module units."""

    kind: Literal["rect", "circle"]
    x: float
    y: float
    w: float
    h: float
    r: float = 0.0
    hole: bool = False  # cut out of the shape it lies in (even-odd fills do that by themselves)


@dataclass(frozen=True)
class TextLine:
    text: str
    centre: float  # x of the line's middle
    baseline: float
    size: float  # em, in modules


@dataclass(frozen=True)
class Art:
    """Everything one design of one code draws, in module units from the canvas's top-left corner.

    Shapes of a group are filled together; ``finders`` and ``frame`` are filled even-odd (a ring is
    an outer shape and a hole, the eye a third shape inside the hole)."""

    width: float
    height: float
    code_x: float  # the code's box (its quiet zone included): where it starts, and its side
    code_y: float
    code_side: float
    modules: list[Shape]
    finders: list[Shape]
    frame: list[Shape]
    texts: list[TextLine]
    fg: str
    bg: str
    finder_fg: str | None  # None: painted as the modules
    gradient: str | None
    fg2: str | None
    symbol: tuple[float, float, float]  # x, y and side of the symbol (no quiet zone): the gradient's span
    pad: tuple[float, float, float] | None  # the logo's place: x, y, side


def _in_finder(row: int, column: int, count: int) -> bool:
    return (row < 7 and column < 7) or (row < 7 and column >= count - 7) or (row >= count - 7 and column < 7)


def _module_shapes(draw: Drawing, shape: str, x0: float, y0: float) -> Iterable[Shape]:
    count = len(draw.modules)
    if shape == "square":  # horizontal runs: a few hundred rectangles rather than thousands
        for row in range(count):
            column = 0
            while column < count:
                if draw.is_dark(row, column) and not _in_finder(row, column, count):
                    start = column
                    while column < count and draw.is_dark(row, column) and not _in_finder(row, column, count):
                        column += 1
                    yield Shape("rect", x0 + start, y0 + row, column - start, 1)
                else:
                    column += 1
        return
    for row in range(count):
        for column in range(count):
            if not draw.is_dark(row, column) or _in_finder(row, column, count):
                continue
            x, y = x0 + column, y0 + row
            if shape == "rounded":
                yield Shape("rect", x, y, 1, 1, ROUNDED_MODULE)
            elif shape == "dots":
                inset = (1 - DOT_DIAMETER) / 2
                yield Shape("circle", x + inset, y + inset, DOT_DIAMETER, DOT_DIAMETER)
            else:  # gapped
                yield Shape("rect", x + GAP / 2, y + GAP / 2, 1 - GAP, 1 - GAP)


def _finder_shapes(shape: str, x: float, y: float) -> list[Shape]:
    """Outer square of 7, its hole of 5, the eye of 3: even-odd makes the ring and the eye."""
    found = []
    for inset, side in ((0, 7), (1, 5), (2, 3)):
        if shape == "circle":
            found.append(Shape("circle", x + inset, y + inset, side, side, hole=side == 5))
        else:
            radius = {7: 2.0, 5: 1.4, 3: 0.9}[side] if shape == "rounded" else 0.0
            found.append(Shape("rect", x + inset, y + inset, side, side, radius, hole=side == 5))
    return found


def art(draw: Drawing, design: Design, short_url: str) -> Art:
    """The shapes of ``draw`` (a module matrix, its border, colours and logo pad) in ``design``."""
    count = len(draw.modules)
    side = float(draw.width)
    framed = design.frame == "label"
    band = 0.0
    texts: list[TextLine] = []
    if framed:
        # A static code's payload is no link to print (a Wi-Fi password, a contact): only a URL is.
        link = short_url if short_url.startswith(("https://", "http://")) else ""
        lines = [design.frame_text] + ([link] if design.frame_url and link else [])
        band = max(4.0, round(side * 0.2)) if len(lines) == 1 else max(6.0, round(side * 0.28))
    width = side + 2 * FRAME_WIDTH if framed else side
    height = side + 2 * FRAME_WIDTH + band if framed else side
    code_x = FRAME_WIDTH if framed else 0.0
    code_y = code_x + (band if framed and design.frame_position == "above" else 0.0)
    if framed:
        band_top = code_y + side if design.frame_position == "below" else FRAME_WIDTH
        room = width - 2 * FRAME_WIDTH - 1.0  # half a module of air each side
        first = min(band * (0.5 if len(lines) == 1 else 0.4), room / max(text_width(lines[0]), 0.01))
        sizes = [first] + (
            [min(band * 0.2, room / max(text_width(lines[1]), 0.01))] if len(lines) > 1 else []
        )
        cap = 0.73  # the font's capital height, in ems: what centring is reckoned on
        block = sum(size * cap for size in sizes) + (0.35 * sizes[0] if len(sizes) > 1 else 0.0)
        baseline = band_top + (band - block) / 2 + sizes[0] * cap
        for index, (text, size) in enumerate(zip(lines, sizes, strict=True)):
            if index:
                baseline += 0.35 * sizes[0] + size * cap
            texts.append(TextLine(text, width / 2, baseline, size))
    origin_x, origin_y = code_x + draw.border, code_y + draw.border
    finders: list[Shape] = []
    for row, column in ((0, 0), (0, count - 7), (count - 7, 0)):
        finders += _finder_shapes(design.finder, origin_x + column, origin_y + row)
    frame = (
        [
            Shape("rect", 0, 0, width, height, FRAME_RADIUS),
            Shape("rect", code_x, code_y, side, side, hole=True),
        ]
        if framed
        else []
    )
    pad = None
    if draw.logo is not None:
        corner = draw.pad_origin()
        pad = (code_x + corner, code_y + corner, float(draw.pad))
    return Art(
        width=width,
        height=height,
        code_x=code_x,
        code_y=code_y,
        code_side=side,
        modules=list(_module_shapes(draw, design.modules, origin_x, origin_y)),
        finders=finders,
        frame=frame,
        texts=texts,
        fg=draw.fg,
        bg=draw.bg,
        finder_fg=design.finder_fg,
        gradient=design.gradient,
        fg2=design.fg2,
        symbol=(origin_x, origin_y, float(count)),
        pad=pad,
    )


# -- PNG --------------------------------------------------------------------------------------------


def _rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def _mask(shapes: Iterable[Shape], size: tuple[int, int], unit: float) -> Image.Image:
    """The shapes as an 8-bit mask at ``unit`` pixels per module, holes cut out of what is under
    them (drawn in order: a hole follows the shape it lies in)."""
    mask = Image.new("L", size, 0)
    pen = ImageDraw.Draw(mask)
    for shape in shapes:
        fill = 0 if shape.hole else 255
        box = (
            round(shape.x * unit),
            round(shape.y * unit),
            round((shape.x + shape.w) * unit) - 1,
            round((shape.y + shape.h) * unit) - 1,
        )
        if shape.kind == "circle":
            pen.ellipse(box, fill=fill)
        elif shape.r:
            pen.rounded_rectangle(box, radius=round(shape.r * unit), fill=fill)
        else:
            pen.rectangle(box, fill=fill)
    return mask


def _gradient_image(art_: Art, size: tuple[int, int], box: int) -> Image.Image:
    """``fg`` into ``fg2`` over the symbol: linear from its top-left to its bottom-right corner,
    radial from its middle to its corners."""
    assert art_.fg2 is not None
    x, y, side = (round(value * box) for value in art_.symbol)
    if art_.gradient == "radial":
        reach = math.ceil(side * math.sqrt(2))  # the gradient's 255 circle reaches the corners
        ramp = Image.radial_gradient("L").resize((reach, reach), Image.Resampling.BILINEAR)
        offset = (reach - side) // 2
        ramp = ramp.crop((offset, offset, offset + side, offset + side))
    else:
        down = Image.linear_gradient("L").resize((side, side), Image.Resampling.BILINEAR)
        half = down.point(lambda value: value // 2)
        ramp = ImageChops.add(
            half, half.transpose(Image.Transpose.ROTATE_90).transpose(Image.Transpose.FLIP_TOP_BOTTOM)
        )
    weights = Image.new("L", size, 0)
    weights.paste(ramp, (x, y))
    # Beyond the symbol (the quiet zone, the frame) nothing is painted with it.
    return Image.composite(Image.new("RGB", size, art_.fg2), Image.new("RGB", size, art_.fg), weights)


def raster_art(art_: Art, box: int, logo: Logo | None) -> Image.Image:
    """The design at ``box`` pixels per module, RGB. Masks are drawn at up to four times the size
    and reduced, for smooth curves."""
    size = (round(art_.width * box), round(art_.height * box))
    scale = max(1, min(4, 4800 // max(size)))
    big = (size[0] * scale, size[1] * scale)
    unit = box * scale

    def reduced(mask: Image.Image) -> Image.Image:
        return mask if scale == 1 else mask.resize(size, Image.Resampling.BOX)

    image = Image.new("RGB", size, art_.bg)
    module_mask = _mask(art_.modules, big, unit)
    if art_.finder_fg is None:
        module_mask = ImageChops.lighter(module_mask, _mask(art_.finders, big, unit))
    paint = _gradient_image(art_, size, box) if art_.gradient else Image.new("RGB", size, art_.fg)
    image.paste(paint, (0, 0), reduced(module_mask))
    if art_.finder_fg is not None:
        image.paste(art_.finder_fg, (0, 0, *size), reduced(_mask(art_.finders, big, unit)))
    if art_.frame:
        image.paste(art_.fg, (0, 0, *size), reduced(_mask(art_.frame, big, unit)))
        pen = ImageDraw.Draw(image)
        for line in art_.texts:
            font = ImageFont.truetype(
                str(FONT_FILE), max(1, round(line.size * box)), layout_engine=ImageFont.Layout.BASIC
            )
            pen.text(
                (line.centre * box, line.baseline * box), line.text, fill=art_.bg, font=font, anchor="ms"
            )
    if logo is not None and art_.pad is not None:
        x, y, side = art_.pad
        inner = round((side - 2) * box)  # one module of quiet pad on every side of the logo
        picture = Image.open(io.BytesIO(logo.png)).convert("RGBA")
        fitted = ImageOps.contain(picture, (inner, inner), Image.Resampling.LANCZOS)
        corner_x, corner_y = round((x + 1) * box), round((y + 1) * box)
        image.paste(
            fitted,
            (corner_x + (inner - fitted.width) // 2, corner_y + (inner - fitted.height) // 2),
            fitted,
        )
    return image


# -- SVG --------------------------------------------------------------------------------------------


def _n(value: float) -> str:
    """A coordinate, briefly."""
    return f"{value:.3f}".rstrip("0").rstrip(".") or "0"


def _path(shapes: Iterable[Shape]) -> str:
    parts = []
    for s in shapes:
        if s.kind == "circle":
            r = s.w / 2
            arc = f"a{_n(r)} {_n(r)} 0 1 0"
            parts.append(f"M{_n(s.x)} {_n(s.y + r)}{arc} {_n(s.w)} 0{arc} -{_n(s.w)} 0z")
        elif s.r:
            r = s.r
            a = f"a{_n(r)} {_n(r)} 0 0 1"
            parts.append(
                f"M{_n(s.x + r)} {_n(s.y)}h{_n(s.w - 2 * r)}{a} {_n(r)} {_n(r)}v{_n(s.h - 2 * r)}"
                f"{a} -{_n(r)} {_n(r)}h-{_n(s.w - 2 * r)}{a} -{_n(r)} -{_n(r)}v-{_n(s.h - 2 * r)}"
                f"{a} {_n(r)} -{_n(r)}z"
            )
        else:
            parts.append(f"M{_n(s.x)} {_n(s.y)}h{_n(s.w)}v{_n(s.h)}h-{_n(s.w)}z")
    return "".join(parts)


def _text_path(line: TextLine) -> str:
    """The line's glyphs as one SVG path (the font's outlines; a viewer needs no font)."""
    from fontTools.pens.svgPathPen import SVGPathPen
    from fontTools.pens.transformPen import TransformPen

    cmap, metrics, units, glyphs = _font_tables()
    scale = line.size / units
    x = line.centre - text_width(line.text) * line.size / 2
    pen = SVGPathPen(glyphs, ntos=_n)
    for ch in line.text:
        name = cmap.get(ord(ch))
        if name is None:
            continue
        glyphs[name].draw(TransformPen(pen, (scale, 0, 0, -scale, x, line.baseline)))
        x += metrics[name][0] * scale
    return str(pen.getCommands())


def svg_body(art_: Art, logo_uri: str | None) -> list[str]:
    """The design's SVG elements (the ground first), in module units."""
    fill = art_.fg
    parts = [f'<rect width="{_n(art_.width)}" height="{_n(art_.height)}" fill="{art_.bg}"/>']
    if art_.gradient:
        x, y, side = art_.symbol
        if art_.gradient == "radial":
            shape = (
                f'<radialGradient id="paint" gradientUnits="userSpaceOnUse" cx="{_n(x + side / 2)}" '
                f'cy="{_n(y + side / 2)}" r="{_n(side / math.sqrt(2))}">'
            )
            end = "</radialGradient>"
        else:
            shape = (
                f'<linearGradient id="paint" gradientUnits="userSpaceOnUse" x1="{_n(x)}" y1="{_n(y)}" '
                f'x2="{_n(x + side)}" y2="{_n(y + side)}">'
            )
            end = "</linearGradient>"
        parts.append(
            f'<defs>{shape}<stop offset="0" stop-color="{art_.fg}"/>'
            f'<stop offset="1" stop-color="{art_.fg2}"/>{end}</defs>'
        )
        fill = "url(#paint)"
    parts.append(f'<path fill="{fill}" d="{_path(art_.modules)}"/>')
    parts.append(f'<path fill="{art_.finder_fg or fill}" fill-rule="evenodd" d="{_path(art_.finders)}"/>')
    if art_.frame:
        parts.append(f'<path fill="{art_.fg}" fill-rule="evenodd" d="{_path(art_.frame)}"/>')
        for line in art_.texts:
            parts.append(f'<path fill="{art_.bg}" d="{_text_path(line)}"/>')
    if logo_uri is not None and art_.pad is not None:
        x, y, side = art_.pad
        parts.append(
            f'<image x="{_n(x + 1)}" y="{_n(y + 1)}" width="{_n(side - 2)}" height="{_n(side - 2)}" '
            f'preserveAspectRatio="xMidYMid meet" href="{logo_uri}" xlink:href="{logo_uri}"/>'
        )
    return parts


# -- PDF --------------------------------------------------------------------------------------------


@functools.cache
def pdf_font() -> str:
    """The frame's font, registered with ReportLab (which embeds the subset a file uses)."""
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont

    pdfmetrics.registerFont(TTFont(FONT_NAME, str(FONT_FILE)))
    return FONT_NAME


@dataclass
class _Place:
    """Where a design lands on a PDF page: its top-left corner (points from the page's bottom-left)
    and points per module."""

    left: float
    top: float
    unit: float

    def path(self, pdf: Canvas, shapes: Iterable[Shape]) -> Any:
        path = pdf.beginPath()
        u = self.unit
        for s in shapes:
            x, y = self.left + s.x * u, self.top - (s.y + s.h) * u
            if s.kind == "circle":
                path.circle(x + s.w * u / 2, y + s.h * u / 2, s.w * u / 2)
            elif s.r:
                path.roundRect(x, y, s.w * u, s.h * u, s.r * u)
            else:
                path.rect(x, y, s.w * u, s.h * u)
        return path


def draw_pdf(pdf: Canvas, art_: Art, left: float, top: float, unit: float, logo: Logo | None) -> None:
    """The design on a PDF page: its top-left corner at (``left``, ``top``) points, ``unit`` points
    a module."""
    from reportlab.lib.colors import HexColor
    from reportlab.lib.utils import ImageReader
    from reportlab.pdfgen.canvas import FILL_EVEN_ODD, FILL_NON_ZERO

    place = _Place(left, top, unit)
    pdf.saveState()
    pdf.setFillColor(HexColor(art_.bg))
    pdf.rect(left, top - art_.height * unit, art_.width * unit, art_.height * unit, stroke=0, fill=1)
    groups: list[tuple[list[Shape], int]] = [(art_.modules, FILL_NON_ZERO)]
    if art_.finder_fg is None:
        groups.append((art_.finders, FILL_EVEN_ODD))
    for shapes, mode in groups:
        if art_.gradient:
            assert art_.fg2 is not None
            x, y, side = art_.symbol
            pdf.saveState()
            pdf.clipPath(place.path(pdf, shapes), stroke=0, fill=0, fillMode=mode)
            colours = (HexColor(art_.fg), HexColor(art_.fg2))
            if art_.gradient == "radial":
                pdf.radialGradient(
                    left + (x + side / 2) * unit,
                    top - (y + side / 2) * unit,
                    side / math.sqrt(2) * unit,
                    colours,
                )
            else:
                pdf.linearGradient(
                    left + x * unit,
                    top - y * unit,
                    left + (x + side) * unit,
                    top - (y + side) * unit,
                    colours,
                )
            pdf.restoreState()
        else:
            pdf.setFillColor(HexColor(art_.fg))
            pdf.drawPath(place.path(pdf, shapes), stroke=0, fill=1, fillMode=mode)
    if art_.finder_fg is not None:
        pdf.setFillColor(HexColor(art_.finder_fg))
        pdf.drawPath(place.path(pdf, art_.finders), stroke=0, fill=1, fillMode=FILL_EVEN_ODD)
    if art_.frame:
        pdf.setFillColor(HexColor(art_.fg))
        pdf.drawPath(place.path(pdf, art_.frame), stroke=0, fill=1, fillMode=FILL_EVEN_ODD)
        pdf.setFillColor(HexColor(art_.bg))
        for line in art_.texts:
            pdf.setFont(pdf_font(), line.size * unit)
            pdf.drawCentredString(left + line.centre * unit, top - line.baseline * unit, line.text)
    if logo is not None and art_.pad is not None:
        x, y, side = art_.pad
        pdf.drawImage(
            ImageReader(io.BytesIO(logo.png)),
            left + (x + 1) * unit,
            top - (y + side - 1) * unit,
            (side - 2) * unit,
            (side - 2) * unit,
            preserveAspectRatio=True,
            mask="auto",
        )
    pdf.restoreState()
