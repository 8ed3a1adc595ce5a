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
import re
import warnings
from dataclasses import dataclass
from typing import Literal

import qrcode
import qrcode.constants
import zxingcpp
from PIL import Image, ImageOps

from services.management.params import Params
from shared.errors import InvalidField

# Part of every cache key: bump it when the renderer's output changes for the same options.
RENDERER_VERSION = 4

Format = Literal["png", "svg"]
ECC_LEVELS = {
    "L": qrcode.constants.ERROR_CORRECT_L,
    "M": qrcode.constants.ERROR_CORRECT_M,
    "Q": qrcode.constants.ERROR_CORRECT_Q,
    "H": qrcode.constants.ERROR_CORRECT_H,
}
MIN_SIZE, MAX_SIZE, DEFAULT_SIZE = 64, 4096, 400
MAX_BORDER, DEFAULT_BORDER = 16, 4
MIN_DPI, MAX_DPI, DEFAULT_PRINT_DPI = 72, 2400, 300
MIN_SIZE_MM, MAX_SIZE_MM = 5.0, 2000.0
SIZE_TOLERANCE = 0.10
# WCAG's contrast ratio between the modules and the ground; 4.5 is what it asks of text. Below it a
# phone camera in poor light starts to fail, whatever a clean digital decode says.
MIN_CONTRAST = 4.5
# A logo and the quiet pad around it take at most this share of the symbol's width (so under a
# tenth of its area: ECC H restores up to 30% of the codewords, with room for wear and print).
LOGO_SHARE = 0.3
# Decoders want a quiet zone; a border-0 image is checked as it will sit on a page: with margin.
CHECK_MARGIN_MODULES = 4
# The raster an SVG is checked through: this many pixels per module.
SVG_CHECK_SCALE = 8

IMAGE_PARAMETERS = ("size", "border", "ecc", "fg", "bg", "dpi", "size_mm")
_HEX_COLOUR = re.compile(r"#?([0-9a-fA-F]{6}|[0-9a-fA-F]{3})")
_QR_ONLY = zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.QRCode)


class RenderRefused(Exception):
    """The rendered image did not decode to its payload; it must not be served."""


@dataclass(frozen=True)
class Logo:
    """A normalised logo (PNG, RGBA) and the digest it is stored and keyed under."""

    sha256: str
    png: bytes


@dataclass(frozen=True)
class ImageOptions:
    size: int = DEFAULT_SIZE  # pixels; with size_mm, derived from it and dpi
    border: int = DEFAULT_BORDER
    ecc: str = "M"
    fg: str = "#000000"
    bg: str = "#ffffff"
    dpi: int | None = None  # recorded in the PNG; with size_mm, the SVG is sized in mm
    size_mm: float | None = None

    def for_logo(self, has_logo: bool) -> ImageOptions:
        """With a logo a code always uses ECC H."""
        if not has_logo or self.ecc == "H":
            return self
        return ImageOptions(self.size, self.border, "H", self.fg, self.bg, self.dpi, self.size_mm)

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
            ]
        )
        return hashlib.sha256(material.encode()).hexdigest()


def parse_colour(params: Params, name: str, default: str) -> str:
    raw = params.get(name)
    if raw is None:
        return default
    match = _HEX_COLOUR.fullmatch(raw.strip())
    if match is None:
        raise InvalidField(name, f"{name} must be a hex colour such as 1a2b3c or #1a2b3c")
    digits = match.group(1).lower()
    if len(digits) == 3:
        digits = "".join(ch * 2 for ch in digits)
    return f"#{digits}"


def _luminance(colour: str) -> float:
    """WCAG relative luminance of ``#rrggbb``."""
    channels = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def check_contrast(fg: str, bg: str) -> None:
    """Refuse a colour pair a phone camera cannot be trusted to read."""
    dark, light = _luminance(fg), _luminance(bg)
    if dark >= light:
        raise InvalidField(
            "fg",
            f"the modules ({fg}) must be darker than the ground ({bg}): many phone scanners cannot "
            "read light modules on a dark ground",
        )
    ratio = (light + 0.05) / (dark + 0.05)
    if ratio < MIN_CONTRAST:
        raise InvalidField(
            "fg",
            f"the contrast of {fg} on {bg} is {ratio:.2f}:1; a phone camera needs at least "
            f"{MIN_CONTRAST}:1 (darken the modules or lighten the ground)",
        )


def parse_options(params: Params, image_format: Format = "png") -> ImageOptions:
    """Image options from the query string; every mistake is a 422 naming its parameter."""
    size_mm = params.number("size_mm", minimum=MIN_SIZE_MM, maximum=MAX_SIZE_MM)
    dpi = params.optional_integer("dpi", minimum=MIN_DPI, maximum=MAX_DPI)
    if size_mm is not None:
        if params.get("size") is not None:
            raise InvalidField("size", "give size (pixels) or size_mm (with dpi), not both")
        dpi = dpi or DEFAULT_PRINT_DPI
        size = round(size_mm / 25.4 * dpi)
        if image_format == "svg":  # drawn in mm at any size: the pixels only name a raster of it
            size = min(max(size, MIN_SIZE), MAX_SIZE)
        elif not MIN_SIZE <= size <= MAX_SIZE:
            advice = "raise the dpi" if size < MIN_SIZE else "lower the dpi, or use the SVG for large prints"
            raise InvalidField(
                "size_mm",
                f"{size_mm:g} mm at {dpi} dpi is {size} px; a PNG is {MIN_SIZE} to {MAX_SIZE} px ({advice})",
            )
    else:
        size = params.integer("size", default=DEFAULT_SIZE, minimum=MIN_SIZE, maximum=MAX_SIZE)
    fg = parse_colour(params, "fg", "#000000")
    bg = parse_colour(params, "bg", "#ffffff")
    check_contrast(fg, bg)
    return ImageOptions(
        size=size,
        border=params.integer("border", default=DEFAULT_BORDER, minimum=0, maximum=MAX_BORDER),
        ecc=params.choice("ecc", tuple(ECC_LEVELS), default="M"),
        fg=fg,
        bg=bg,
        dpi=dpi,
        size_mm=size_mm,
    )


@dataclass(frozen=True)
class Drawing:
    """What both formats draw: dark modules on a ground, a border, and a logo on a quiet pad."""

    modules: tuple[tuple[bool, ...], ...]  # the symbol without its border
    border: int
    fg: str
    bg: str
    logo: Logo | None
    pad: int  # modules a side of the quiet square in the middle (0 without a logo)

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


def drawing(payload: str, options: ImageOptions, logo: Logo | None) -> Drawing:
    qr = qrcode.QRCode(error_correction=ECC_LEVELS[options.ecc], box_size=1, border=0)
    # optimize=0: the whole payload in byte mode. qrcode 8.2 splits digit runs into numeric segments,
    # and a run of zeros can then fill an error-correction block with zero bytes, on which its
    # Reed-Solomon code fails (glog(0)). Printable ASCII in byte mode never yields a zero data byte.
    qr.add_data(payload, optimize=0)
    qr.make(fit=True)
    modules = tuple(tuple(bool(cell) for cell in row) for row in qr.modules)
    pad = 0
    if logo is not None:
        count = len(modules)
        pad = int(count * LOGO_SHARE)
        if pad % 2 != count % 2:  # the same parity as the symbol: centred on the module grid
            pad -= 1
    return Drawing(modules, options.border, options.fg, options.bg, logo, pad)


def pixels_per_module(size: int, modules: int) -> int:
    """The whole number of pixels per module nearest ``size``; refused if more than 10% off."""
    box = max(1, round(size / modules))
    if abs(box * modules - size) > SIZE_TOLERANCE * size:
        raise InvalidField(
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


def render_png(payload: str, options: ImageOptions, logo: Logo | None = None) -> bytes:
    options = options.for_logo(logo is not None)
    draw = drawing(payload, options, logo)
    box = pixels_per_module(options.size, draw.width)
    image = raster(draw, box)
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
    check_decodes(image, payload, margin=CHECK_MARGIN_MODULES * box if draw.border < 4 else 0, ground=draw.bg)
    return png


def render_svg(payload: str, options: ImageOptions, logo: Logo | None = None) -> bytes:
    options = options.for_logo(logo is not None)
    draw = drawing(payload, options, logo)
    # Checked through a raster of the same drawing (a test also rasterises the SVG text itself).
    check_decodes(
        raster(draw, SVG_CHECK_SCALE),
        payload,
        margin=CHECK_MARGIN_MODULES * SVG_CHECK_SCALE if draw.border < 4 else 0,
        ground=draw.bg,
    )
    return svg_text(draw, options).encode()


def svg_text(draw: Drawing, options: ImageOptions) -> str:
    """The drawing as SVG: one path of horizontal runs of dark modules, in module units."""
    runs = []
    for row, cells in enumerate(draw.modules):
        column = 0
        count = len(cells)
        while column < count:
            if draw.is_dark(row, column):
                start = column
                while column < count and draw.is_dark(row, column):
                    column += 1
                runs.append(
                    f"M{start + draw.border} {row + draw.border}h{column - start}v1h-{column - start}z"
                )
            else:
                column += 1
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


LOGO_TYPES = {"image/png": ("PNG", b"\x89PNG\r\n\x1a\n"), "image/jpeg": ("JPEG", b"\xff\xd8\xff")}
LOGO_MIN_SIDE, LOGO_MAX_SIDE = 16, 4096  # of an upload, read from its header before decoding
# Logos are stored at most this large: the pad of a 4096 px image is about 800 px wide.
LOGO_STORED_SIDE = 1024


@dataclass(frozen=True)
class StoredLogo:
    logo: Logo
    width: int
    height: int


def normalise_logo(data: bytes, content_type: str) -> StoredLogo:
    """An uploaded PNG or JPEG as the PNG that is stored: RGBA, at most 1024 px a side, metadata
    dropped. Its dimensions are read from the header first, so an image bomb is refused unopened."""
    image_format, magic = LOGO_TYPES[content_type]
    if not data.startswith(magic):
        raise InvalidField("logo", f"the body is not a {image_format} image (its first bytes say otherwise)")
    try:
        with Image.open(io.BytesIO(data), formats=[image_format]) as image:
            width, height = image.size
            if not (min(width, height) >= LOGO_MIN_SIDE and max(width, height) <= LOGO_MAX_SIDE):
                raise InvalidField(
                    "logo",
                    f"a logo is {LOGO_MIN_SIDE} to {LOGO_MAX_SIDE} px a side; this one is {width}x{height}",
                )
            image.load()
            with warnings.catch_warnings():  # a damaged EXIF block is ignored, not an error
                warnings.simplefilter("ignore")
                upright = ImageOps.exif_transpose(image)
            if upright.mode in ("I", "I;16", "I;16B", "I;16L"):  # 16-bit grey: scale, do not clip
                upright = upright.convert("I").point(lambda value: value / 256).convert("L")
            rgba = upright.convert("RGBA")
    except InvalidField:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise InvalidField("logo", f"the {image_format} image cannot be read: {exc}"[:200]) from None
    rgba.thumbnail((LOGO_STORED_SIDE, LOGO_STORED_SIDE), Image.Resampling.LANCZOS)
    rgba.info.clear()  # no ICC profile or text: the pixels are read as sRGB by every renderer alike
    buffer = io.BytesIO()
    rgba.save(buffer, format="PNG", optimize=True)
    png = buffer.getvalue()
    return StoredLogo(Logo(hashlib.sha256(png).hexdigest(), png), rgba.width, rgba.height)
