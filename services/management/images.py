"""QR rendering: a pure function from (payload, options) to image bytes, checked by decoding.

qrcode 8.2 keeps state in a ``QRCode`` that is not safe to reuse, so every render builds a new
one. Every image is decoded with zxing-cpp before anyone gets it: an image that does not read back
as exactly its payload is refused, never handed out.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass

import qrcode
import qrcode.constants
import zxingcpp
from PIL import Image

from services.management.params import Params
from shared.errors import InvalidField

# Part of every cache key: bump it when the renderer's output changes for the same options.
RENDERER_VERSION = 1

ECC_LEVELS = {
    "L": qrcode.constants.ERROR_CORRECT_L,
    "M": qrcode.constants.ERROR_CORRECT_M,
    "Q": qrcode.constants.ERROR_CORRECT_Q,
    "H": qrcode.constants.ERROR_CORRECT_H,
}
MIN_SIZE, MAX_SIZE, DEFAULT_SIZE = 64, 4096, 400
MAX_BORDER, DEFAULT_BORDER = 16, 4
SIZE_TOLERANCE = 0.10
# Decoders want a quiet zone; a border-0 image is checked as it will sit on a page: with margin.
CHECK_MARGIN_MODULES = 4


_QR_ONLY = zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.QRCode)


class RenderRefused(Exception):
    """The rendered image did not decode to its payload; it must not be served."""


@dataclass(frozen=True)
class ImageOptions:
    size: int = DEFAULT_SIZE
    border: int = DEFAULT_BORDER
    ecc: str = "M"

    def cache_key(self, payload: str, image_format: str) -> str:
        material = json.dumps([RENDERER_VERSION, image_format, payload, self.size, self.border, self.ecc])
        return hashlib.sha256(material.encode()).hexdigest()


def parse_options(params: Params) -> ImageOptions:
    """Image options from the query string (``size``, ``border``, ``ecc``)."""
    return ImageOptions(
        size=params.integer("size", default=DEFAULT_SIZE, minimum=MIN_SIZE, maximum=MAX_SIZE),
        border=params.integer("border", default=DEFAULT_BORDER, minimum=0, maximum=MAX_BORDER),
        ecc=params.choice("ecc", tuple(ECC_LEVELS), default="M"),
    )


IMAGE_PARAMETERS = ("size", "border", "ecc")


def _new_qr(payload: str, options: ImageOptions) -> qrcode.QRCode:
    qr = qrcode.QRCode(error_correction=ECC_LEVELS[options.ecc], box_size=1, border=options.border)
    # optimize=0: the whole payload in byte mode. qrcode 8.2 splits digit runs into numeric segments,
    # and a run of zeros can then fill an error-correction block with zero bytes, on which its
    # Reed-Solomon code fails (glog(0)). Printable ASCII in byte mode never yields a zero data byte.
    qr.add_data(payload, optimize=0)
    qr.make(fit=True)
    return qr


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


def render_png(payload: str, options: ImageOptions) -> bytes:
    qr = _new_qr(payload, options)
    qr.box_size = pixels_per_module(options.size, qr.modules_count + 2 * options.border)
    image = qr.make_image().get_image()
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    png = buffer.getvalue()
    check_decodes(png, payload, margin=CHECK_MARGIN_MODULES * qr.box_size)
    return png


def check_decodes(png: bytes, payload: str, *, margin: int = 0) -> None:
    """Raise :class:`RenderRefused` unless a real decoder reads exactly ``payload`` from ``png``."""
    image = Image.open(io.BytesIO(png)).convert("L")
    if margin:
        framed = Image.new("L", (image.width + 2 * margin, image.height + 2 * margin), 255)
        framed.paste(image, (margin, margin))
        image = framed
    # try_invert=False: light modules on a dark ground defeat many phone scanners; count them unreadable.
    results = zxingcpp.read_barcodes(image, formats=_QR_ONLY, try_invert=False)
    texts = [result.text for result in results]
    if texts != [payload]:
        raise RenderRefused(f"the rendered image decodes to {texts!r}, not to the code's short URL")
