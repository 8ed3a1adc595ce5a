"""Bearer tokens: ``ADMIN_TOKENS_FILE`` lists each by name and SHA-256, never the token itself.

The file is read again when it changes (checked at most every two seconds). Emptying or deleting it
revokes every token at once; a file that became unreadable as text (a syntax error half-way through an
edit) keeps the previous tokens until it is fixed.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import time
from pathlib import Path

from shared.settings import ConfigError

log = logging.getLogger(__name__)

_TOKEN_NAME = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
RELOAD_INTERVAL = 2.0


def parse_tokens(text: str, *, source: str = "ADMIN_TOKENS_FILE") -> dict[str, str]:
    """``name:sha256hex`` lines (``#`` comments and blank lines allowed) -> {digest: name}."""
    tokens: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, _, digest = line.partition(":")
        name, digest = name.strip(), digest.strip().lower()
        if not _TOKEN_NAME.fullmatch(name) or not _SHA256.fullmatch(digest):
            raise ConfigError(f"{source} line {number}: expected name:sha256-hex-of-token")
        if digest in tokens:
            raise ConfigError(f"{source} line {number}: the same token is listed twice")
        tokens[digest] = name
    return tokens


def sha256_of(token: str) -> str:
    """A token's SHA-256 (hex), as the file lists it."""
    return hashlib.sha256(token.encode()).hexdigest()


class TokenFile:
    """The tokens file, read again when it changes (see the module's docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp = self._stat()
        self._tokens = parse_tokens(self._read())
        if not self._tokens:
            raise ConfigError("ADMIN_TOKENS_FILE lists no tokens: nobody could use the API")
        self._checked = time.monotonic()

    def _read(self) -> str:
        try:
            return self.path.read_text()
        except OSError as exc:
            raise ConfigError(f"ADMIN_TOKENS_FILE: cannot read {self.path}: {exc.strerror}") from None

    def _stat(self) -> tuple[float, int] | None:
        try:
            info = os.stat(self.path)
        except OSError:
            return None
        return (info.st_mtime, info.st_size)

    def _refresh(self) -> None:
        now = time.monotonic()
        if now - self._checked < RELOAD_INTERVAL:
            return
        self._checked = now
        stamp = self._stat()
        if stamp == self._stamp:
            return
        if stamp is None:
            self._tokens, self._stamp = {}, None
            log.error("admin tokens file is gone: no token is accepted")
            return
        try:
            self._tokens = parse_tokens(self._read())
        except ConfigError as exc:
            log.error("admin tokens file not reloaded, keeping the previous tokens: %s", exc)
            return
        self._stamp = stamp
        log.info("admin tokens reloaded", extra={"tokens": len(self._tokens)})

    def name_of(self, token: str) -> str | None:
        return self.name_for_digest(sha256_of(token))

    def listed(self) -> dict[str, str]:
        """Every token the file lists: its SHA-256 (hex) and its name."""
        self._refresh()
        return dict(self._tokens)

    def name_for_digest(self, digest: str) -> str | None:
        """The name of the token with this SHA-256 (hex), while the file lists it."""
        self._refresh()
        for known, name in self._tokens.items():
            if hmac.compare_digest(known, digest):
                return name
        return None
