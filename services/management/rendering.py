"""QR rendering: a pure function from (payload, options, logo) to image bytes, checked by decoding.

A render builds the symbol's module matrix (a new ``QRCode`` every time: qrcode 8.2 keeps state that
is not safe to reuse) and draws it as PNG or SVG from one :class:`Drawing`. Every image is decoded
before anyone gets it: a PNG as it is, an SVG through a raster of the same drawing. An image that
does not read back as exactly its payload is refused, never handed out.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

import qrcode
import qrcode.constants
import qrcode.exceptions
import zxingcpp
from PIL import Image, ImageOps

from services.management import design as designs
from services.management import limits
from services.management.design import PLAIN, Design, Drawing
from services.management.errors import InvalidValue
from services.management.logos import Logo

# Part of every cache key: bump it when the renderer's output changes for the same options.
RENDERER_VERSION = 4

Format = Literal["png", "svg"]
ECC_LEVELS = {
    "L": qrcode.constants.ERROR_CORRECT_L,
    "M": qrcode.constants.ERROR_CORRECT_M,
    "Q": qrcode.constants.ERROR_CORRECT_Q,
    "H": qrcode.constants.ERROR_CORRECT_H,
}
SIZE_TOLERANCE = 0.10
# A logo and the quiet pad around it take at most this share of the symbol's width (so under a
# tenth of its area: ECC H restores up to 30% of the codewords, with room for wear and print).
LOGO_SHARE = 0.3
# Decoders want a quiet zone; a border-0 image is checked as it will sit on a page: with margin.
CHECK_MARGIN_MODULES = 4
# The raster an SVG is checked through: this many pixels per module.
SVG_CHECK_SCALE = 8

_QR_ONLY = zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.QRCode)


class RenderRefused(Exception):
    """The rendered image did not decode to its payload; it must not be served."""


@dataclass(frozen=True)
class ImageOptions:
    size: int = limits.DEFAULT_SIZE  # pixels; with size_mm, derived from it and dpi
    # False: nobody asked for this size (the default): the nearest whole pixels per module will do,
    # never a refusal for a symbol that does not divide it.
    size_chosen: bool = True
    border: int = limits.DEFAULT_BORDER
    ecc: str = limits.DEFAULT_ECC
    fg: str = limits.DEFAULT_FG
    bg: str = limits.DEFAULT_BG
    dpi: int | None = None  # recorded in the PNG; with size_mm, the SVG is sized in mm
    size_mm: float | None = None
    design: Design = PLAIN
    # True: no design was asked for; the code's saved design applies (:meth:`for_code`), and until
    # then these are the plain defaults. Never part of a key: resolved before one is made.
    saved_design: bool = False

    def for_code(self, saved: Mapping[str, Any] | None) -> ImageOptions:
        """These options for a code whose saved design is ``saved`` (checked when it was saved)."""
        if not self.saved_design:
            return self
        if saved is None:
            return replace(self, saved_design=False)
        # Checked when it was saved; a name of no design (a row written around the API) is left out.
        design = Design(**{key: value for key, value in saved.items() if key in designs.DESIGN_NAMES})
        fg, bg = saved.get("fg", limits.DEFAULT_FG), saved.get("bg", limits.DEFAULT_BG)
        if design.frame != "none" and self.border < designs.MIN_FRAMED_BORDER:
            raise InvalidValue(
                "border",
                f"this code's saved design has a frame, which needs a quiet zone of at least "
                f"{designs.MIN_FRAMED_BORDER}",
            )
        return replace(self, fg=fg, bg=bg, design=design, saved_design=False)

    def for_logo(self, has_logo: bool) -> ImageOptions:
        """With a logo a code always uses ECC H."""
        if not has_logo or self.ecc == "H":
            return self
        return replace(self, ecc="H")

    def cache_key(self, payload: str, image_format: Format, logo_sha256: str | None = None) -> str:
        material = json.dumps(
            [
                RENDERER_VERSION,
                image_format,
                payload,
                self.size,
                self.border,
                self.ecc,
                self.fg,
                self.bg,
                self.dpi,
                self.size_mm,
                logo_sha256,
                # Only a designed code's key names its design: a plain code's keys stay as they were.
                *([] if self.design.plain else [self.design.as_key()]),
                *([] if self.size_chosen else ["size: nearest"]),  # keys of chosen sizes stay as they were
            ]
        )
        return hashlib.sha256(material.encode()).hexdigest()


def _luminance(colour: str) -> float:
    """WCAG relative luminance of ``#rrggbb``."""
    channels = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast_ratio(fg: str, bg: str) -> float:
    """WCAG's contrast ratio of two ``#rrggbb`` colours, 1 to 21, whichever is darker."""
    one, other = _luminance(fg), _luminance(bg)
    return (max(one, other) + 0.05) / (min(one, other) + 0.05)


def check_contrast(fg: str, bg: str, design: Design = PLAIN) -> None:
    """Refuse colours a phone camera cannot be trusted to read: the modules' (and a gradient's
    second colour, and the finders' own) against the ground. A gradient's lightest point is one of
    its two ends: along a straight line between two sRGB colours the luminance is a convex function
    (a sum of the channels' convex transfer curves), so both ends passing means every point does."""
    _check_pair("fg", fg, bg)
    if design.fg2 is not None:
        _check_pair("fg2", design.fg2, bg)
    if design.finder_fg is not None:
        _check_pair("finder_fg", design.finder_fg, bg)


def _check_pair(name: str, fg: str, bg: str) -> None:
    dark, light = _luminance(fg), _luminance(bg)
    if dark >= light:
        raise InvalidValue(
            name,
            f"the modules ({fg}) must be darker than the ground ({bg}): many phone scanners cannot "
            "read light modules on a dark ground",
        )
    ratio = contrast_ratio(fg, bg)
    if ratio < limits.MIN_CONTRAST:
        raise InvalidValue(
            name,
            f"the contrast of {fg} on {bg} is {ratio:.2f}:1; a phone camera needs at least "
            f"{limits.MIN_CONTRAST}:1 (darken the modules or lighten the ground)",
        )


def drawing(payload: str, options: ImageOptions, logo: Logo | None) -> Drawing:
    qr = qrcode.QRCode(error_correction=ECC_LEVELS[options.ecc], box_size=1, border=0)
    # optimize=0: the whole payload in byte mode. qrcode 8.2 splits digit runs into numeric segments,
    # and a run of zeros can then fill an error-correction block with zero bytes, on which its
    # Reed-Solomon code fails (glog(0)). Printable ASCII in byte mode never yields a zero data byte.
    qr.add_data(payload, optimize=0)
    try:
        qr.make(fit=True)
    except (ValueError, qrcode.exceptions.DataOverflowError):  # past version 40 at this level
        reason = f"{len(payload.encode()):,} bytes do not fit in a QR code at error correction {options.ecc}"
        raise InvalidValue("ecc", reason) from None
    modules = tuple(tuple(bool(cell) for cell in row) for row in qr.modules)
    pad = 0
    if logo is not None:
        count = len(modules)
        pad = int(count * LOGO_SHARE)
        if pad % 2 != count % 2:  # the same parity as the symbol: centred on the module grid
            pad -= 1
    return Drawing(modules, options.border, options.fg, options.bg, logo, pad, options.design)


def check_drawable(payload: str, options: ImageOptions) -> None:
    """:class:`InvalidValue` for options ``payload`` cannot be drawn in as a PNG (too long for the
    error correction, a size its symbol does not divide), found without drawing a pixel."""
    draw = drawing(payload, options, None)
    width = draw.width if options.design.plain else round(designs.art(draw, options.design, payload).width)
    pixels_per_module(options.size, width, exact=options.size_chosen)


def pixels_per_module(size: int, modules: int, *, exact: bool = True) -> int:
    """The whole number of pixels per module nearest ``size``; when ``exact`` (a size asked for),
    refused if more than 10% off."""
    box = max(1, round(size / modules))
    if exact and abs(box * modules - size) > SIZE_TOLERANCE * size:
        raise InvalidValue(
            "size",
            f"{size} px cannot be drawn at whole pixels per module: this code is {modules} modules wide "
            f"with its border; use a size of at least {5 * modules}, or a multiple of {modules}",
        )
    return box


def _hex_rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def raster(draw: Drawing, box: int) -> Image.Image:
    """The drawing at ``box`` pixels per module: a two-colour palette image, RGB with a logo."""
    width = draw.width
    # Palette index 0 is the ground, 1 the modules.
    indices = Image.new("P", (width, width), 0)
    pixels = indices.load()
    assert pixels is not None
    for row in range(len(draw.modules)):
        for column in range(len(draw.modules)):
            if draw.is_dark(row, column):
                pixels[column + draw.border, row + draw.border] = 1
    indices.putpalette([*_hex_rgb(draw.bg), *_hex_rgb(draw.fg)])
    image = indices.resize((width * box, width * box), Image.Resampling.NEAREST)
    if draw.logo is None:
        return image
    image = image.convert("RGB")
    logo = Image.open(io.BytesIO(draw.logo.png)).convert("RGBA")
    inner = (draw.pad - 2) * box  # one module of quiet pad on every side of the logo
    fitted = ImageOps.contain(logo, (inner, inner), Image.Resampling.LANCZOS)
    corner = draw.pad_origin() * box
    offset = (corner + box + (inner - fitted.width) // 2, corner + box + (inner - fitted.height) // 2)
    image.paste(fitted, offset, fitted)
    return image


def check_margin(draw: Drawing, box: int) -> int:
    """Pixels of ground the decode check adds around an image: a code with less than the standard's
    quiet zone is checked as it will sit on a page; a framed one as it is (its frame is its page)."""
    if draw.design.frame != "none":
        return 0
    return CHECK_MARGIN_MODULES * box if draw.border < 4 else 0


def render_png(payload: str, options: ImageOptions, logo: Logo | None = None) -> bytes:
    options = options.for_logo(logo is not None)
    draw = drawing(payload, options, logo)
    if options.design.plain:
        box = pixels_per_module(options.size, draw.width, exact=options.size_chosen)
        image = raster(draw, box)
    else:
        shapes = designs.art(draw, options.design, payload)
        box = pixels_per_module(options.size, round(shapes.width), exact=options.size_chosen)
        image = designs.raster_art(shapes, box, logo)
    buffer = io.BytesIO()
    extra: dict[str, tuple[float, float]] = {}
    if options.size_mm is not None:
        # Whole pixels per module make the image up to 10% off the size asked for: record the DPI
        # at which it prints at exactly size_mm.
        exact = image.width * 25.4 / options.size_mm
        extra["dpi"] = (exact, exact)
    elif options.dpi:
        extra["dpi"] = (options.dpi, options.dpi)
    image.save(buffer, format="PNG", **extra)  # optimize=True: 5% smaller, three times slower
    png = buffer.getvalue()
    check_decodes(image, payload, margin=check_margin(draw, box), ground=draw.bg)
    return png


def render_svg(payload: str, options: ImageOptions, logo: Logo | None = None) -> bytes:
    options = options.for_logo(logo is not None)
    draw = drawing(payload, options, logo)
    # Checked through a raster of the same drawing (a test also rasterises the SVG text itself).
    if options.design.plain:
        check_decodes(
            raster(draw, SVG_CHECK_SCALE), payload, margin=check_margin(draw, SVG_CHECK_SCALE), ground=draw.bg
        )
        return svg_text(draw, options).encode()
    shapes = designs.art(draw, options.design, payload)
    check_decodes(
        designs.raster_art(shapes, SVG_CHECK_SCALE, logo),
        payload,
        margin=check_margin(draw, SVG_CHECK_SCALE),
        ground=draw.bg,
    )
    return designed_svg_text(shapes, options, logo).encode()


def dark_runs(draw: Drawing) -> Iterator[tuple[int, int, int]]:
    """(row, column, length) of each horizontal run of dark modules, border included in the
    coordinates: what the vector formats draw, one rectangle a run."""
    for row, cells in enumerate(draw.modules):
        column = 0
        count = len(cells)
        while column < count:
            if draw.is_dark(row, column):
                start = column
                while column < count and draw.is_dark(row, column):
                    column += 1
                yield row + draw.border, start + draw.border, column - start
            else:
                column += 1


def svg_text(draw: Drawing, options: ImageOptions) -> str:
    """The drawing as SVG: one path of horizontal runs of dark modules, in module units."""
    runs = [f"M{column} {row}h{length}v1h-{length}z" for row, column, length in dark_runs(draw)]
    width = draw.width
    shown = f"{options.size_mm:g}mm" if options.size_mm is not None else str(options.size)
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>\n',
        f'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" version="1.1" '
        f'width="{shown}" height="{shown}" '
        f'viewBox="0 0 {width} {width}" shape-rendering="crispEdges">',
        f'<rect width="{width}" height="{width}" fill="{draw.bg}"/>',
        f'<path fill="{draw.fg}" d="{"".join(runs)}"/>',
    ]
    if draw.logo is not None:
        corner = draw.pad_origin()
        uri = "data:image/png;base64," + base64.b64encode(draw.logo.png).decode()
        parts.append(
            f'<image x="{corner + 1}" y="{corner + 1}" width="{draw.pad - 2}" height="{draw.pad - 2}" '
            # Both spellings: SVG 2 viewers read href, SVG 1.1 tools (print RIPs, editors) xlink:href.
            f'preserveAspectRatio="xMidYMid meet" href="{uri}" xlink:href="{uri}"/>'
        )
    parts.append("</svg>\n")
    return "".join(parts)


def designed_svg_text(shapes: designs.Art, options: ImageOptions, logo: Logo | None) -> str:
    """A designed code as SVG: vector shapes in module units (the frame's text as glyph paths)."""
    scale = options.size / shapes.width  # size is the image's width; a frame makes it taller
    if options.size_mm is not None:
        shown_width = f"{options.size_mm:g}mm"
        shown_height = f"{options.size_mm * shapes.height / shapes.width:.2f}mm"
    else:
        shown_width, shown_height = str(options.size), str(round(shapes.height * scale))
    uri = "data:image/png;base64," + base64.b64encode(logo.png).decode() if logo is not None else None
    return "".join(
        [
            '<?xml version="1.0" encoding="UTF-8"?>\n',
            '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
            f'version="1.1" width="{shown_width}" height="{shown_height}" '
            f'viewBox="0 0 {shapes.width:g} {shapes.height:g}">',
            *designs.svg_body(shapes, uri),
            "</svg>\n",
        ]
    )


def check_decodes(image: Image.Image, payload: str, *, margin: int = 0, ground: str = "#ffffff") -> None:
    """Raise :class:`RenderRefused` unless a real decoder reads exactly ``payload`` from ``image``
    (framed by ``margin`` pixels of the ``ground`` colour, as a border-0 code sits on its page)."""
    grey = image.convert("L")
    if margin:
        shade = Image.new("RGB", (1, 1), ground).convert("L").getpixel((0, 0))
        framed = Image.new("L", (grey.width + 2 * margin, grey.height + 2 * margin), shade)
        framed.paste(grey, (margin, margin))
        grey = framed
    # try_invert=False: light modules on a dark ground defeat many phone scanners; count them unreadable.
    results = zxingcpp.read_barcodes(grey, formats=_QR_ONLY, try_invert=False)
    texts = [result.text for result in results]
    if texts != [payload]:
        raise RenderRefused(f"the rendered image decodes to {texts!r}, not to the code's short URL")
