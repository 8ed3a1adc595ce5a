"""The console's session cookie and forgery checks, on their own (sign-outs, which the database
keeps, are tested through the service in test_pages.py)."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

from starlette.datastructures import Headers

from services.management.auth.sessions import LIFETIME_SECONDS, SECRET_FILE, Sessions, cookie_name
from services.management.auth.tokens import TokenFile, TokenStore


def test_the_secret_is_made_once_private_and_kept(tmp_path: Path) -> None:
    first = Sessions.in_folder(tmp_path / "data", None)
    assert not (tmp_path / "data" / SECRET_FILE).exists()  # made on first use only
    _, cookie = first.issue(now=1000)
    kept = tmp_path / "data" / SECRET_FILE
    assert kept.stat().st_mode & 0o777 == 0o600
    again = Sessions.in_folder(tmp_path / "data", None)  # a restart
    assert again.verify(cookie, now=1001) is not None


def test_a_short_or_unreadable_secret_file_is_not_used(tmp_path: Path) -> None:
    (tmp_path / SECRET_FILE).write_bytes(b"short")
    sessions = Sessions.in_folder(tmp_path, None)
    _, cookie = sessions.issue()
    assert sessions.verify(cookie) is not None
    assert len(sessions.secret) == 32
    assert sessions.secret != b"short"


def test_tampered_expired_and_malformed_cookies_are_refused(tmp_path: Path) -> None:
    sessions = Sessions(b"k" * 32, None)
    session, cookie = sessions.issue(now=1000)
    assert sessions.verify(cookie, now=1000 + LIFETIME_SECONDS - 1) == session
    assert sessions.verify(cookie, now=1000 + LIFETIME_SECONDS) is None  # expired
    sid, tag, expires, mac = cookie.split(".")
    assert sessions.verify(f"{sid}.{tag}.{int(expires) + 999}.{mac}", now=1000) is None  # extended
    assert sessions.verify(f"other.{tag}.{expires}.{mac}", now=1000) is None
    assert Sessions(b"x" * 32, None).verify(cookie, now=1000) is None  # another service's key
    for value in ("", "a.b.c", "a.b.x.d", "." * 3, "a" * 301, None):
        assert sessions.verify(value, now=1000) is None


def file_only(path: Path) -> TokenStore:
    """The tokens of a file alone (no database is asked for a file's token)."""
    return TokenStore(None, b"t" * 32, TokenFile(path))  # type: ignore[arg-type]


def test_a_session_lives_while_its_token_is_listed(tmp_path: Path) -> None:
    file = tmp_path / "tokens"
    digest = hashlib.sha256(b"t0ken").hexdigest()
    file.write_text(f"ops:{digest}\n")
    sessions = Sessions(b"k" * 32, file_only(file))
    session, cookie = sessions.issue(digest)
    assert sessions.verify(cookie) == session
    assert sessions.token_name(session) == "ops"
    _, anonymous = sessions.issue()  # no token: nothing with tokens on
    assert sessions.verify(anonymous) is None


def test_the_cookie_names_its_token_by_a_keyed_tag_not_its_digest(tmp_path: Path) -> None:
    file = tmp_path / "tokens"
    digest = hashlib.sha256(b"weak").hexdigest()
    file.write_text(f"ops:{digest}\n")
    sessions = Sessions(b"k" * 32, file_only(file))
    session, cookie = sessions.issue(digest)
    assert digest not in cookie
    assert session.token_tag == hmac.new(b"k" * 32, f"token.{digest}".encode(), hashlib.sha256).hexdigest()
    # Without the key, the tag tells nothing: another key tags the same token otherwise.
    assert Sessions(b"x" * 32, file_only(file)).token_tag(digest) != session.token_tag
    # A cookie of the old form, with the token's plain digest, opens nothing any more.
    sid, _, expires, _ = cookie.split(".")
    body = f"{sid}.{digest}.{expires}"
    plain = f"{body}.{hmac.new(b'k' * 32, body.encode(), hashlib.sha256).hexdigest()}"
    assert sessions.verify(plain) is None


def test_the_cookies_name_follows_the_scheme() -> None:
    assert cookie_name(https=True) == "__Host-qr_console"
    assert cookie_name(https=False) == "qr_console"


def test_the_forgery_checks() -> None:
    sessions = Sessions(b"k" * 32, None)
    session, _ = sessions.issue()
    token = sessions.csrf_token(session)
    same = Headers(
        {"host": "qr.example.org", "origin": "https://qr.example.org", "sec-fetch-site": "same-origin"}
    )
    assert sessions.forged(same, session, token) is None
    assert sessions.forged(Headers({"host": "qr.example.org"}), session, token) is None  # an older browser
    assert sessions.forged(same, session, "0" * 40)
    assert sessions.forged(same, None, token)
    assert sessions.forged(
        Headers({"host": "qr.example.org", "origin": "https://evil.example"}), session, token
    )
    assert sessions.forged(
        Headers({"host": "qr.example.org", "origin": "https://qr.example.org.evil.example"}), session, token
    )
    assert sessions.forged(
        Headers({"host": "qr.example.org", "sec-fetch-site": "cross-site"}), session, token
    )
    other, _ = sessions.issue()
    assert sessions.forged(same, other, token)  # one session's token is not another's
