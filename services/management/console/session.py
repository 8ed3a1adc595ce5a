"""The console's sessions: a signed cookie, the token against cross-site forms, and the checks every
state-changing request passes.

The cookie (HttpOnly, SameSite=Strict, Secure when the page came over HTTPS) holds a random session
id, the SHA-256 of the bearer token it was signed in with (``-`` when no tokens are configured),
its expiry, and an HMAC of the three under a secret kept in the image store's folder (made once,
mode 0600, so sessions outlive a restart). No token is ever in it: the digest is what the tokens
file holds already, and each request checks that the file still lists it, so removing a token from
the file ends its sessions at once.

A form post is accepted only with the session's CSRF token (an HMAC of the session id: no state on
the server), and only when the browser's ``Sec-Fetch-Site`` (if sent) says ``same-origin`` and its
``Origin`` (if sent) names this very host. Any one of the three refuses a form posted from another
site.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from starlette.datastructures import Headers

from services.management.access import TokenFile
from shared.clients import NetworkSet

log = logging.getLogger(__name__)

LIFETIME_SECONDS = 12 * 3600
SECRET_FILE = ".console-secret"  # noqa: S105 - the name of the file that holds it
NO_TOKEN = "-"  # noqa: S105 - in place of a token digest


@dataclass(frozen=True)
class Session:
    sid: str
    token_digest: str  # NO_TOKEN when the service has no tokens
    expires: int


class Sessions:
    def __init__(self, secret: bytes | Path, tokens: TokenFile | None) -> None:
        """``secret``: the key itself, or the folder to keep it in (read or made on first use)."""
        self._secret = secret if isinstance(secret, bytes) else None
        self._folder = secret if isinstance(secret, Path) else None
        self.tokens = tokens
        self._ended: dict[str, int] = {}  # signed out: session id -> when its cookie expires

    @classmethod
    def in_folder(cls, folder: Path, tokens: TokenFile | None) -> Sessions:
        return cls(folder, tokens)

    @property
    def secret(self) -> bytes:
        if self._secret is None:
            assert self._folder is not None
            self._secret = _kept_secret(self._folder)
        return self._secret

    @property
    def sign_in_required(self) -> bool:
        return self.tokens is not None

    def _mac(self, text: str) -> str:
        return hmac.new(self.secret, text.encode(), hashlib.sha256).hexdigest()

    def issue(self, token_digest: str = NO_TOKEN, *, now: float | None = None) -> tuple[Session, str]:
        """A new session and its cookie value."""
        expires = int(now if now is not None else time.time()) + LIFETIME_SECONDS
        session = Session(secrets.token_urlsafe(18), token_digest, expires)
        body = f"{session.sid}.{session.token_digest}.{session.expires}"
        return session, f"{body}.{self._mac(body)}"

    def read(self, value: str | None, *, now: float | None = None) -> Session | None:
        """The session a cookie value names, when its signature holds, it has not expired, and
        (with tokens) its token is still listed."""
        if not value or len(value) > 300 or not value.isascii():
            return None
        parts = value.split(".")
        if len(parts) != 4 or not parts[2].isdigit():
            return None
        sid, digest, expires, mac = parts
        if not hmac.compare_digest(mac, self._mac(f"{sid}.{digest}.{expires}")):
            return None
        if sid in self._ended:
            return None
        if int(expires) <= (now if now is not None else time.time()):
            return None
        if self.tokens is not None and (digest == NO_TOKEN or self.tokens.name_for_digest(digest) is None):
            return None
        return Session(sid, digest, int(expires))

    def end(self, session: Session) -> None:
        """Sign out: this session's cookie opens nothing any more (in this process, until it would
        have expired anyway)."""
        now = time.time()
        self._ended = {sid: until for sid, until in self._ended.items() if until > now}
        self._ended[session.sid] = session.expires

    def token_name(self, session: Session) -> str | None:
        if self.tokens is None or session.token_digest == NO_TOKEN:
            return None
        return self.tokens.name_for_digest(session.token_digest)

    def csrf_token(self, session: Session) -> str:
        return self._mac(f"csrf.{session.sid}")[:40]

    def forged(self, headers: Headers, session: Session | None, token: str | None) -> str | None:
        """Why a state-changing request is refused as possibly cross-site, or ``None``."""
        site = headers.get("sec-fetch-site")
        if site is not None and site != "same-origin":
            return f"the form came from another site (Sec-Fetch-Site: {site[:20]})"
        origin = headers.get("origin")
        if origin is not None:
            host = (headers.get("host") or "").lower()
            try:
                netloc = urlsplit(origin).netloc.lower()
            except ValueError:  # not a URL at all (an unbalanced [)
                netloc = None
            if origin == "null" or netloc != host:
                return "the form came from another origin"
        if session is None:
            return "the session has ended; open the page again"
        if not token or not hmac.compare_digest(token.encode(), self.csrf_token(session).encode()):
            return "the form's security token does not match this session; reload the page"
        return None


def _kept_secret(folder: Path) -> bytes:
    """The key in ``folder`` (made there, mode 0600, the first time); one of this process's own
    when the folder cannot hold it (sessions then end with the process)."""
    path = folder / SECRET_FILE
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            # Written whole under another name, then linked into place: a second process that
            # starts meanwhile reads either no file or the whole key, never half of one.
            fresh = folder / f"{SECRET_FILE}.{os.getpid()}"
            descriptor = os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "wb") as file:
                file.write(secrets.token_bytes(32))
            try:
                os.link(fresh, path)
            except FileExistsError:
                pass  # another process was first: its key it is
            finally:
                fresh.unlink(missing_ok=True)
        secret = path.read_bytes()
        if len(secret) < 32:
            raise OSError(f"{path} holds fewer than 32 bytes")
    except OSError as exc:
        log.warning("console sessions end with this process: %s", exc)
        secret = secrets.token_bytes(32)
    return secret


def over_https(scheme: str, peer: str | None, headers: Headers, trusted: NetworkSet) -> bool:
    """Whether the browser's request came over HTTPS: the connection's own scheme, or what the
    edge says in ``X-Forwarded-Proto`` when the peer is a trusted proxy."""
    if scheme == "https":
        return True
    forwarded = headers.get("x-forwarded-proto")
    if forwarded is None or peer is None or not trusted.contains_text(peer):
        return False
    return forwarded.split(",")[-1].strip().lower() == "https"
