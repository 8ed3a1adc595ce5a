"""Every bound and default of the management API, stated once.

The pydantic models that validate requests and generate the OpenAPI document read them, and so do
the renderer, the schema's check constraints and qrctl's option ranges and help. This module
imports nothing, so that qrctl can read it without loading pydantic or Pillow.
"""

from __future__ import annotations

from typing import Final

# -- codes ------------------------------------------------------------------------------------------
MAX_TITLE: Final = 200
MAX_TAGS: Final = 20
MAX_TAG: Final = 40
REDIRECT_STATUSES: Final = (301, 302, 307, 308)
DEFAULT_REDIRECT_STATUS: Final = 302
HISTORY_ACTIONS: Final = ("create", "update", "delete", "erase")  # erase: a code's scans, on request
# What the audit log records (services/management/audit.py says when each is written).
AUDIT_ACTIONS: Final = (
    "code.create",
    "code.update",
    "code.delete",
    "code.bulk",
    "logo.set",
    "logo.remove",
    "scans.erase",
    "token.create",
    "token.revoke",
    "sign-in",
    "sign-out",
)
DEFAULT_AUDIT_PAGE: Final = 100
MAX_ACTOR: Final = 320  # an e-mail address's longest

# -- bulk -------------------------------------------------------------------------------------------
# Row errors a bulk refusal lists; a body with more has a systematic problem the first ones show.
MAX_ROW_ERRORS: Final = 1000
IDEMPOTENCY_HOURS: Final = 24  # an Idempotency-Key's answer is kept this long (qr-manage maintain prunes)

# -- pages and searches -----------------------------------------------------------------------------
MAX_PAGE: Final = 500
DEFAULT_LIST_PAGE: Final = 50
DEFAULT_HISTORY_PAGE: Final = 100
MAX_CURSOR: Final = 512
MAX_SEARCH: Final = 200  # characters of q
MAX_SELECTED: Final = 100  # ids in one ids= filter (a selection; 6.5 KB of URL at most)

# -- scan statistics --------------------------------------------------------------------------------
DEFAULT_SCAN_DAYS: Final = 30  # a range without from: this many days before to
MAX_SCAN_YEARS: Final = 20  # from from to to
MAX_SCAN_BUCKETS: Final = 10_000  # in one series
# An hourly series counts its unique visitors from raw scans (the visitor hash's key changes daily,
# so no rollup can add them up): its range is kept to a month, within the shortest retention.
MAX_HOURLY_DAYS: Final = 31

# -- images -----------------------------------------------------------------------------------------
MIN_SIZE: Final = 64
MAX_SIZE: Final = 4096
DEFAULT_SIZE: Final = 400
MAX_BORDER: Final = 16
DEFAULT_BORDER: Final = 4
ECC_LEVELS: Final = ("L", "M", "Q", "H")
DEFAULT_ECC: Final = "M"
MIN_DPI: Final = 72
MAX_DPI: Final = 2400
DEFAULT_PRINT_DPI: Final = 300
MIN_SIZE_MM: Final = 5.0
MAX_SIZE_MM: Final = 2000.0  # an SVG is drawn in mm at any size
# A PNG of size_mm is at most MAX_SIZE pixels even at MIN_DPI: 1444.97 mm, to the hundredth below.
MAX_PNG_SIZE_MM: Final = int(MAX_SIZE / MIN_DPI * 25.4 * 100) / 100
DEFAULT_FG: Final = "#000000"
DEFAULT_BG: Final = "#ffffff"
# WCAG's contrast ratio between the modules and the ground; 4.5 is what it asks of text. Below it a
# phone camera in poor light starts to fail, whatever a clean digital decode says.
MIN_CONTRAST: Final = 4.5

# -- designs ----------------------------------------------------------------------------------------
MODULE_SHAPES: Final = ("square", "rounded", "dots", "gapped")
FINDER_SHAPES: Final = ("square", "rounded", "circle")
GRADIENTS: Final = ("linear", "radial")
FRAMES: Final = ("none", "label")
FRAME_POSITIONS: Final = ("below", "above")
MAX_FRAME_TEXT: Final = 30
DEFAULT_FRAME_TEXT: Final = "SCAN ME"
# A frame sits outside the quiet zone, which must then be at least this many modules (the least the
# label sheets allow; 4 is the standard's and the default).
MIN_FRAMED_BORDER: Final = 2

# -- logos ------------------------------------------------------------------------------------------
LOGO_MIN_SIDE: Final = 16  # pixels a side of an upload, read from its header before decoding
LOGO_MAX_SIDE: Final = 4096
# Logos are stored at most this large: the pad of a 4096 px image is about 800 px wide.
LOGO_STORED_SIDE: Final = 1024

# Label sheets (export.pdf): each code's size with its quiet zone, and the grid's bounds.
MIN_LABEL_MM: Final = 10.0
MAX_LABEL_MM: Final = 180.0
DEFAULT_LABEL_MM: Final = 30.0
MAX_LABEL_COLUMNS: Final = 19  # of 10 mm codes across A4 (or letter) inside the margins
MAX_LABEL_ROWS: Final = 15  # of 10 mm codes and their text down A4
