"""Sign-in through an OpenID Connect provider (Keycloak or any other), and its JWT access tokens.

The console signs a person in with the authorization code flow: PKCE (S256), ``state`` and
``nonce`` (console/sign_in.py keeps them in a short-lived signed cookie), the code exchanged with
the client's secret, and the ID token checked here: its signature with one of the provider's keys
(RS256 or ES256 only: never ``none``, never an HMAC, which a public key would forge), ``iss``,
``aud`` (and ``azp`` when it names several), ``exp``, ``iat`` and ``nonce``. The API accepts the
same provider's JWT access tokens (a script's service account, client credentials) carrying
``OIDC_AUDIENCE`` in their ``aud`` (:meth:`Provider.verify_access_token`).

The role comes from a claim (``OIDC_ROLES_CLAIM``: ``groups``, or a dotted path such as
``realm_access.roles``) through ``OIDC_ROLE_MAP``: the highest role any of the person's groups maps
to; none, no access.

The discovery document is fetched when first needed and kept for an hour; the keys are kept until a
token names a key id they do not hold, which fetches them again, at most once a minute (a flood of
tokens with made-up key ids costs the provider one request a minute). With the provider down, what
is cached goes on verifying; a sign-in, which needs the provider, gets :class:`ProviderUnavailable`.
Nothing here logs a token, a code or the secret.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeGuard
from urllib.parse import urlencode

import httpx
from authlib.common.security import generate_token
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet

from services.management.auth.roles import Role
from services.management.settings import OidcSettings
from shared.errors import Forbidden, Unauthorized, Unavailable

log = logging.getLogger(__name__)

ALGORITHMS = ["RS256", "ES256"]  # asymmetric only: the provider signs, we hold its public keys
DISCOVERY_SECONDS = 3600
KEYS_REFETCH_SECONDS = 60  # the least time between two fetches of the keys for an unknown key id
LEEWAY_SECONDS = 60  # clocks of the provider and this service may differ this much
HTTP_TIMEOUT_SECONDS = 10.0
MAX_DOCUMENT_BYTES = 512 * 1024  # a discovery document or a key set larger than this is refused
SCOPES = "openid email"


def _instant(value: object) -> TypeGuard[float]:
    """A JWT time: a finite number of seconds (not a boolean, not NaN, not infinity)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


class ProviderUnavailable(Exception):
    """The provider cannot be reached, or answers what no provider should (the reason is the
    message; it never holds a code, a token or the secret)."""


class TokenRefused(Exception):
    """A token that does not pass (the reason is for the log, not for the caller)."""


@dataclass(frozen=True)
class Claims:
    """Who a verified token speaks for: the provider's subject, e-mail, the role it maps to, and
    whether it is a machine client's own token (client credentials: its subject is its client id)."""

    subject: str
    email: str | None
    role: Role | None
    client_id: str | None = None

    @property
    def machine(self) -> bool:
        return self.client_id is not None and self.subject == self.client_id and self.email is None


@dataclass(frozen=True)
class Authorization:
    """One sign-in under way: where to send the browser, and what its callback must match."""

    url: str
    state: str
    nonce: str
    verifier: str


class Provider:
    """The provider of ``settings``: its discovery document, its keys, the code flow's two
    requests and the tokens' checks."""

    def __init__(
        self,
        settings: OidcSettings,
        *,
        http: httpx.AsyncClient | None = None,
        keys_refetch_seconds: float = KEYS_REFETCH_SECONDS,
    ) -> None:
        self.settings = settings
        self._http = http
        self._keys_refetch_seconds = keys_refetch_seconds
        self._discovery: dict[str, Any] | None = None
        self._discovery_at = 0.0
        self._keys: KeySet | None = None
        self._keys_at = float("-inf")
        self._lock = asyncio.Lock()

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    # -- the provider's documents ------------------------------------------------------------------

    async def _get_json(self, url: str) -> dict[str, Any]:
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=HTTP_TIMEOUT_SECONDS, follow_redirects=False)
        try:
            response = await self._http.get(url, headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise ProviderUnavailable(f"{url} cannot be reached ({type(exc).__name__})") from None
        if response.status_code != 200:
            raise ProviderUnavailable(f"{url} answered {response.status_code}")
        if len(response.content) > MAX_DOCUMENT_BYTES:
            raise ProviderUnavailable(f"{url} answered more than {MAX_DOCUMENT_BYTES} bytes")
        try:
            document = response.json()
        except ValueError:
            raise ProviderUnavailable(f"{url} did not answer JSON") from None
        if not isinstance(document, dict):
            raise ProviderUnavailable(f"{url} did not answer a JSON object")
        return document

    async def discovery(self, *, fresh: bool = False) -> dict[str, Any]:
        """The provider's discovery document, fetched at most once an hour (kept past that while
        the provider is away), or now when ``fresh``."""

        def kept() -> dict[str, Any] | None:
            if fresh or time.monotonic() - self._discovery_at >= DISCOVERY_SECONDS:
                return None
            return self._discovery

        if (document := kept()) is not None:
            return document
        async with self._lock:
            if (document := kept()) is not None:
                return document
            url = self.settings.issuer.rstrip("/") + "/.well-known/openid-configuration"
            try:
                document = await self._get_json(url)
            except ProviderUnavailable:
                if self._discovery is not None and not fresh:
                    return self._discovery  # the provider is away: what it said an hour ago holds
                raise
            if document.get("issuer") != self.settings.issuer:
                raise ProviderUnavailable(
                    f"the discovery document names the issuer {document.get('issuer')!r}, "
                    f"not OIDC_ISSUER {self.settings.issuer!r}"
                )
            for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
                if not isinstance(document.get(name), str):
                    raise ProviderUnavailable(f"the discovery document has no {name}")
            self._discovery, self._discovery_at = document, time.monotonic()
            return document

    async def _key_set(self, *, unknown_kid: bool = False) -> KeySet:
        """The provider's public keys; with ``unknown_kid``, fetched again unless that was done
        less than a minute ago."""
        if self._keys is not None and not unknown_kid:
            return self._keys
        async with self._lock:
            recently = time.monotonic() - self._keys_at < self._keys_refetch_seconds
            if self._keys is not None and (not unknown_kid or recently):
                return self._keys
            self._keys_at = time.monotonic()
        uri = (await self.discovery())["jwks_uri"]
        document = await self._get_json(uri)
        try:
            keys = KeySet.import_key_set(document)  # type: ignore[arg-type]
        except (JoseError, ValueError, TypeError, KeyError) as exc:
            raise ProviderUnavailable(
                f"the provider's key set cannot be read ({type(exc).__name__})"
            ) from None
        self._keys = keys
        return keys

    # -- the code flow -----------------------------------------------------------------------------

    async def authorization(self, redirect_uri: str) -> Authorization:
        """A new sign-in: the provider's authorization URL with PKCE (S256), state and nonce. The
        discovery document is asked for afresh: a provider that is away then gets the person a
        clear page here, rather than an error in the browser at the provider's address."""
        document = await self.discovery(fresh=True)
        state, nonce, verifier = generate_token(32), generate_token(32), generate_token(64)
        query = {
            "response_type": "code",
            "client_id": self.settings.client_id,
            "redirect_uri": redirect_uri,
            "scope": SCOPES,
            "state": state,
            "nonce": nonce,
            "code_challenge": create_s256_code_challenge(verifier),
            "code_challenge_method": "S256",
        }
        endpoint = document["authorization_endpoint"]
        separator = "&" if "?" in endpoint else "?"
        return Authorization(f"{endpoint}{separator}{urlencode(query)}", state, nonce, verifier)

    async def exchange(self, code: str, verifier: str, redirect_uri: str, nonce: str) -> Claims:
        """The ID token's claims for the code the provider sent back, checked (see the module's
        docstring); :class:`TokenRefused` or :class:`ProviderUnavailable`."""
        document = await self.discovery()
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
        }
        methods = document.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
        auth: httpx.Auth | httpx._client.UseClientDefault = httpx.USE_CLIENT_DEFAULT
        if "client_secret_basic" in methods:
            # RFC 6749 2.3.1: the id and the secret are form-encoded before they are joined.
            auth = httpx.BasicAuth(
                _form_encoded(self.settings.client_id), _form_encoded(self.settings.client_secret)
            )
        else:
            form |= {"client_id": self.settings.client_id, "client_secret": self.settings.client_secret}
        assert self._http is not None  # made by discovery()
        try:
            response = await self._http.post(
                document["token_endpoint"], data=form, auth=auth, headers={"Accept": "application/json"}
            )
        except httpx.HTTPError as exc:
            raise ProviderUnavailable(
                f"the token endpoint cannot be reached ({type(exc).__name__})"
            ) from None
        if response.status_code >= 500:
            raise ProviderUnavailable(f"the token endpoint answered {response.status_code}")
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if response.status_code != 200 or not isinstance(answer, dict):
            error = answer.get("error") if isinstance(answer, dict) else None
            raise TokenRefused(f"the provider refused the code ({response.status_code}, {str(error)[:60]})")
        id_token = answer.get("id_token")
        if not isinstance(id_token, str):
            raise TokenRefused("the provider's answer holds no ID token")
        claims = await self._verified(id_token, audience=self.settings.client_id, id_token=True)
        if not isinstance(claims.get("nonce"), str) or not hmac.compare_digest(claims["nonce"], nonce):
            raise TokenRefused("the ID token's nonce is not this sign-in's")
        return self._claims(claims)

    async def end_session_url(self, post_logout_redirect_uri: str) -> str | None:
        """Where to send the browser to end its session at the provider too (RP-initiated logout,
        by client id), or ``None`` when the provider offers none or cannot be reached."""
        try:
            document = await self.discovery()
        except ProviderUnavailable as exc:
            log.warning("the provider's session is left alone: %s", exc)
            return None
        endpoint = document.get("end_session_endpoint")
        if not isinstance(endpoint, str):
            return None
        query = urlencode(
            {"client_id": self.settings.client_id, "post_logout_redirect_uri": post_logout_redirect_uri}
        )
        return f"{endpoint}{'&' if '?' in endpoint else '?'}{query}"

    # -- tokens ------------------------------------------------------------------------------------

    async def verify_access_token(self, token: str) -> Claims:
        """The claims of the provider's JWT access token for the API (``aud`` holding
        ``OIDC_AUDIENCE``); :class:`Unauthorized` for one that does not pass (the reason logged,
        never the token), :class:`Forbidden` for one whose groups map to no role, :class:`Unavailable`
        when the keys it needs cannot be fetched."""
        try:
            claims = self._claims(await self._verified(token, audience=self.settings.audience))
        except TokenRefused as exc:
            log.warning("a JWT access token was refused: %s", exc)
            raise Unauthorized("the bearer token is not valid here") from None
        except ProviderUnavailable as exc:
            log.warning("a JWT access token cannot be checked: %s", exc)
            raise Unavailable(
                "the bearer token cannot be checked now: the identity provider is away", retry_after=30
            ) from None
        if claims.role is None:
            log.warning("a JWT access token maps to no role", extra={"subject": claims.subject})
            raise Forbidden("this account has no role here")
        return claims

    async def _verified(self, token: str, *, audience: str, id_token: bool = False) -> dict[str, Any]:
        """A token's claims once its signature, issuer, audience and times hold."""
        if token.count(".") != 2 or len(token) > 16384:
            raise TokenRefused("not a signed JWT")
        try:
            try:
                decoded = jwt.decode(token, await self._key_set(), algorithms=ALGORITHMS)
            except InvalidKeyIdError:
                decoded = jwt.decode(token, await self._key_set(unknown_kid=True), algorithms=ALGORITHMS)
        except InvalidKeyIdError:
            raise TokenRefused("signed with a key the provider does not publish") from None
        except JoseError as exc:
            raise TokenRefused(f"{exc.error}: {exc.description}"[:200]) from None
        except (ValueError, TypeError, KeyError, UnicodeDecodeError) as exc:
            raise TokenRefused(f"not a readable JWT ({type(exc).__name__})") from None
        claims = decoded.claims
        now = time.time()
        if claims.get("iss") != self.settings.issuer:
            raise TokenRefused(f"issued by {str(claims.get('iss'))[:100]!r}, not OIDC_ISSUER")
        audiences = claims.get("aud")
        audiences = [audiences] if isinstance(audiences, str) else audiences
        if not isinstance(audiences, list) or audience not in audiences:
            raise TokenRefused(f"not meant for this service (aud does not hold {audience!r})")
        exp = claims.get("exp")
        if not _instant(exp) or exp + LEEWAY_SECONDS < now:
            raise TokenRefused("expired" if _instant(exp) else "no expiry")
        nbf = claims.get("nbf")
        if nbf is not None and (not _instant(nbf) or nbf - LEEWAY_SECONDS > now):
            raise TokenRefused("not valid yet (nbf)")
        iat = claims.get("iat")
        if id_token and (not isinstance(iat, int | float) or isinstance(iat, bool)):
            raise TokenRefused("no time of issue (iat)")
        if iat is not None and not _instant(iat):
            raise TokenRefused("a time of issue (iat) that is not a time")
        if _instant(iat) and iat - LEEWAY_SECONDS > now:
            raise TokenRefused("issued in the future")
        if id_token and len(audiences) > 1 and claims.get("azp") != self.settings.client_id:
            raise TokenRefused("issued to another client (azp)")
        if not isinstance(claims.get("sub"), str) or not claims["sub"]:
            raise TokenRefused("no subject")
        # An ID token is not an access token, though its aud is the client id (OIDC_AUDIENCE's
        # default): it carries the sign-in's nonce, or says what it is (Keycloak's typ claim, the
        # header's typ for RFC 9068 access tokens).
        if not id_token and (
            "nonce" in claims
            or str(claims.get("typ", "")).lower() == "id"
            or str(decoded.header.get("typ", "at+jwt")).lower() not in ("at+jwt", "application/at+jwt", "jwt")
        ):
            raise TokenRefused("an ID token, not an access token")
        return claims

    def _claims(self, claims: Mapping[str, Any]) -> Claims:
        email = claims.get("email")
        client_id = claims.get("client_id", claims.get("azp"))
        return Claims(
            subject=str(claims["sub"])[:255],
            email=email[:254] if isinstance(email, str) and email else None,
            role=self.role_of(claims),
            client_id=client_id if isinstance(client_id, str) else None,
        )

    def role_of(self, claims: Mapping[str, Any]) -> Role | None:
        """The highest role the claims' groups map to (``OIDC_ROLES_CLAIM``, ``OIDC_ROLE_MAP``)."""
        return role_for(groups_in(claims, self.settings.roles_claim), self.settings.role_map)


def groups_in(claims: Mapping[str, Any], path: str) -> list[str]:
    """The group (or role) names at ``path`` (``groups``, ``realm_access.roles``): a list of
    names, or one name."""
    value: Any = claims
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [item for item in value if isinstance(item, str)]
    return []


def role_for(groups: list[str], role_map: tuple[tuple[str, Role], ...]) -> Role | None:
    """The highest role any of ``groups`` maps to, or ``None``."""
    roles = [role for group, role in role_map if group in groups]
    return max(roles, key=lambda role: role.rank) if roles else None


def _form_encoded(value: str) -> str:
    return urlencode({"": value})[1:]
