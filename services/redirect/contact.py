"""A dynamic contact's short link: ``/r/{id}`` answers a small page of the contact (HTML, no
JavaScript) with a "Save contact" link to ``/r/{id}?download=vcf``, its vCard 3.0 (``text/vcard``).

The contact is part of the code's cached answer (:class:`Contact` in :class:`CodeAnswer`), read with
it and dropped with it when the code changes (the change notifications), so an edit reaches the
next scanner as a new destination does. A page view is recorded as a scan, as a redirect is; the
download that follows it is not (it would count every scan twice).

The edge adds the public chain's security headers; the page adds its own Content-Security-Policy,
which allows nothing but its one stylesheet, by its hash.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, quote

from starlette.types import Scope, Send

from shared import payloads

DOWNLOAD_PARAMETER = "download"
_STYLE = (
    "body{font:1.125rem/1.5 system-ui,sans-serif;max-width:32rem;margin:2rem auto;padding:0 1rem;"
    "color:#1a1a1a;background:#fff}h1{font-size:1.75rem;margin:0 0 .25rem}p.role{margin:0 0 1.5rem;"
    "color:#4a4a4a}dl{margin:0 0 2rem}dt{font-weight:600;margin-top:.75rem}dd{margin:0;"
    "white-space:pre-line;overflow-wrap:anywhere}a{color:#0b4fa8}a.save{display:inline-block;padding:.75rem"
    " 1.5rem;background:#0b4fa8;color:#fff;border-radius:.5rem;font-weight:600;text-decoration:none}"
    "a.save:focus-visible,a:focus-visible{outline:3px solid #e8a100;outline-offset:2px}"
)
_STYLE_HASH = base64.b64encode(hashlib.sha256(_STYLE.encode()).digest()).decode()
_CSP = (
    f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
).encode()
_UNSAFE_FILE_NAME = re.compile(r"[^A-Za-z0-9._ -]+")


@dataclass(frozen=True, slots=True)
class Contact:
    """A dynamic contact as its short link serves it: its page and its card, made once per lookup."""

    page: bytes
    vcard: bytes
    disposition: str  # the download's Content-Disposition, naming the file after the contact


def contact_of(content: Any) -> Contact:
    """The page and the card of a stored vcard ``content`` (JSONB: a dict, or its text)."""
    fields: dict[str, Any] = json.loads(content) if isinstance(content, str) else dict(content)
    card = payloads.vcard(fields).encode()
    name = str(fields["name"])[:60]
    # An ASCII name for every client, the real one (RFC 6266) for those that read it.
    plain = _UNSAFE_FILE_NAME.sub("", name).strip() or "contact"
    disposition = f"attachment; filename=\"{plain}.vcf\"; filename*=UTF-8''{quote(name + '.vcf', safe='')}"
    return Contact(_page(fields), card, disposition)


def _page(fields: dict[str, Any]) -> bytes:
    escape = html.escape
    name = escape(fields["name"])
    role = " · ".join(escape(fields[key]) for key in ("title", "organisation") if fields.get(key))
    rows: list[tuple[str, str]] = []
    for phone in fields.get("phones") or ():
        rows.append(("Phone", f'<a href="tel:{escape(phone.replace(" ", ""))}">{escape(phone)}</a>'))
    for email in fields.get("emails") or ():
        rows.append(("E-mail", f'<a href="mailto:{escape(quote(email, safe="@+"))}">{escape(email)}</a>'))
    if fields.get("url"):
        url = escape(fields["url"])
        rows.append(("Website", f'<a href="{url}" rel="noopener noreferrer nofollow">{url}</a>'))
    if fields.get("address"):
        rows.append(("Address", escape(fields["address"])))
    if fields.get("note"):
        rows.append(("Note", escape(fields["note"])))
    details = "".join(f"<dt>{label}</dt><dd>{value}</dd>" for label, value in rows)
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{name}: contact</title><style>{_STYLE}</style></head><body><main>"
        f"<h1>{name}</h1>"
        + (f'<p class="role">{role}</p>' if role else "")
        + (f"<dl>{details}</dl>" if details else "")
        + '<p><a class="save" href="?download=vcf" download>Save contact</a></p>'
        "</main></body></html>\n"
    ).encode()


def wants_card(scope: Scope) -> bool:
    """Whether the request asks for the card (``download=vcf`` among its query parameters, such as
    ``?utm_source=poster&download=vcf``) rather than the page."""
    query: bytes = scope["query_string"]
    if b"download" not in query:
        return False
    values = parse_qs(query.decode("latin-1")).get(DOWNLOAD_PARAMETER, [])
    return "vcf" in values


async def respond(scope: Scope, send: Send, contact: Contact, request_id: bytes) -> int:
    """The contact's page or, with ``?download=vcf``, its card; the status."""
    if wants_card(scope):
        body, content_type = contact.vcard, b"text/vcard; charset=utf-8"
        extra = [(b"content-disposition", contact.disposition.encode())]
    else:
        body, content_type = contact.page, b"text/html; charset=utf-8"
        extra = [(b"content-security-policy", _CSP)]
    headers = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode()),
        # The contact may change any time: never kept, so the next scanner gets the current one.
        (b"cache-control", b"no-store"),
        (b"x-robots-tag", b"noindex"),
        (b"x-request-id", request_id),
        *extra,
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})
    return 200
