"""Logos: an upload (PNG or JPEG) checked and normalised into the PNG that is stored and drawn."""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps

from services.management.errors import InvalidValue
from services.management.limits import LOGO_MAX_SIDE, LOGO_MIN_SIDE, LOGO_STORED_SIDE


@dataclass(frozen=True)
class Logo:
    """A normalised logo (PNG, RGBA) and the digest it is stored and keyed under."""

    sha256: str
    png: bytes


LOGO_TYPES = {"image/png": ("PNG", b"\x89PNG\r\n\x1a\n"), "image/jpeg": ("JPEG", b"\xff\xd8\xff")}


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
        raise InvalidValue("logo", f"the body is not a {image_format} image (its first bytes say otherwise)")
    try:
        with Image.open(io.BytesIO(data), formats=[image_format]) as image:
            width, height = image.size
            if not (min(width, height) >= LOGO_MIN_SIDE and max(width, height) <= LOGO_MAX_SIDE):
                raise InvalidValue(
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
    except InvalidValue:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise InvalidValue("logo", f"the {image_format} image cannot be read: {exc}"[:200]) from None
    rgba.thumbnail((LOGO_STORED_SIDE, LOGO_STORED_SIDE), Image.Resampling.LANCZOS)
    rgba.info.clear()  # no ICC profile or text: the pixels are read as sRGB by every renderer alike
    buffer = io.BytesIO()
    rgba.save(buffer, format="PNG", optimize=True)
    png = buffer.getvalue()
    return StoredLogo(Logo(hashlib.sha256(png).hexdigest(), png), rgba.width, rgba.height)
