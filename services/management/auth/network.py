"""The network rule: where a request comes from, which host name it asks for, and whether a page of
another site made it.

The edge already refuses addresses outside ``ADMIN_ALLOWLIST``; the service checks again, so that
reaching it around the edge (another container, a mistaken port mapping) opens nothing.

Whatever the token mode, a request that a page of another site made is refused: browsers say so in
``Sec-Fetch-Site`` (``cross-site``, ``same-site``), and tools (qrctl, curl, scripts) send no such
header. Without tokens the allowlist alone would otherwise let any page an administrator opens fire
the API's reads from the administrator's browser: exports, 4096 px renders, reports over every code.
The console's own pages are ``same-origin`` (``none`` when typed in or bookmarked); a link to a
console page followed from elsewhere (a top-level navigation) still opens it, and the page's own
requests are then ``same-origin``.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.types import Scope

from shared.clients import NetworkSet, client_address

# Answered for anyone: health for the edge and probes; metrics for Prometheus on this port; the
# edge's refusal pages (asked for by the edge on behalf of a client it refused).
OPEN_PATHS = frozenset({"/health", "/livez", "/metrics"})
EDGE_PAGES = "/edge-error/"
# Sec-Fetch-Site values of a request made by a page of another site (Fetch Metadata).
FOREIGN_SITES = frozenset({b"cross-site", b"same-site"})


@dataclass(frozen=True)
class NetworkRule:
    allowlist: NetworkSet
    trusted_proxies: NetworkSet
    hosts: frozenset[str] = frozenset({"localhost", "127.0.0.1"})

    def client(self, scope: Scope) -> str | None:
        """The client's address: the peer's, or the one a trusted proxy forwarded."""
        forwarded = [v.decode("latin-1") for k, v in scope["headers"] if k == b"x-forwarded-for"]
        peer = scope.get("client")
        return client_address(
            peer[0] if peer else None, ",".join(forwarded) if forwarded else None, self.trusted_proxies
        )

    def allows(self, address: str | None) -> bool:
        return address is not None and self.allowlist.contains_text(address)

    def serves_host(self, scope: Scope) -> bool:
        """Whether the Host header names one of ADMIN_HOSTS."""
        host = host_name(next((v for k, v in scope["headers"] if k == b"host"), None))
        return host is not None and (host in self.hosts or host.strip("[]") in self.hosts)


def is_open(path: str) -> bool:
    """Paths answered for anyone (health, metrics, the edge's pages)."""
    return path in OPEN_PATHS or path.startswith(EDGE_PAGES)


def host_name(header: bytes | None) -> str | None:
    """The name in a ``Host`` header, without its port, lower case (``[::1]`` for IPv6)."""
    if not header:
        return None
    host = header.decode("latin-1").strip().lower()
    if host.startswith("["):
        return host.partition("]")[0] + "]"
    return host.rpartition(":")[0] if ":" in host else host


def from_another_site(scope: Scope) -> str | None:
    """The ``Sec-Fetch-Site`` of a request another site's page made, when it is refused, else
    ``None``. The console's forms judge their own posts (a 400 page, see sessions.py); a link to one
    of its pages followed from elsewhere opens that page (top-level navigation, no cookie with it:
    SameSite=Strict)."""
    headers: list[tuple[bytes, bytes]] = scope["headers"]
    site = next((v for k, v in headers if k == b"sec-fetch-site"), None)
    if site is None or site not in FOREIGN_SITES:
        return None
    if is_console(scope["path"]):
        if scope["method"] not in ("GET", "HEAD"):
            return None
        mode = next((v for k, v in headers if k == b"sec-fetch-mode"), None)
        destination = next((v for k, v in headers if k == b"sec-fetch-dest"), None)
        if mode == b"navigate" and destination == b"document":
            return None
    return site.decode("latin-1")


def from_own_pages(scope: Scope) -> bool:
    """Whether a browser says a page of this very site made the request (no Sec-Fetch-Site: an older
    browser or a tool; same-origin; none: typed in)."""
    site = next((v for k, v in scope["headers"] if k == b"sec-fetch-site"), None)
    return site in (None, b"same-origin", b"none")


def is_console(path: str) -> bool:
    """The console's pages and files, which sign in by themselves."""
    return path in ("/", "/console") or path.startswith("/console/")
