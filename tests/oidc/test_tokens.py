"""The provider's JWT access tokens, as the API's door checks them (auth/oidc.py,
``verify_access_token``): a service account's real token passes with its mapped role; each forged
one is refused, and nothing that could be replayed is logged; an unknown key id fetches the keys
again, at most once a minute."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from joserfc import jwt
from joserfc.jwk import RSAKey

from services.management.auth.oidc import Provider
from services.management.auth.roles import Role
from services.management.settings import OidcSettings
from shared.errors import Forbidden, Unauthorized, Unavailable
from tests.oidc.conftest import AUDIENCE, SCRIPTS_CLIENT, RunningProvider, signing_key

pytestmark = pytest.mark.anyio


def oidc_settings(provider: RunningProvider, tmp_path: Path) -> OidcSettings:
    settings = OidcSettings.from_env(provider.environ(tmp_path / "client-secret"))
    assert settings is not None
    return settings


@pytest.fixture
async def checker(provider: RunningProvider, tmp_path: Path) -> AsyncIterator[Provider]:
    checking = Provider(oidc_settings(provider, tmp_path))
    try:
        yield checking
    finally:
        await checking.close()


def claims(provider: RunningProvider, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    good = {
        "iss": provider.issuer,
        "aud": AUDIENCE,
        "sub": "robot",
        "client_id": "robot",
        "iat": now,
        "exp": now + 300,
        "groups": ["qr-admins"],
    }
    return {**good, **changes}


def signed(key: RSAKey, payload: dict[str, Any]) -> str:
    return jwt.encode({"alg": "RS256", "kid": key.kid}, payload, key)


def unsigned_signed(key: RSAKey, payload: dict[str, Any]) -> str:
    """Signed with ``key`` over a payload no JSON encoder of a JOSE library would write (NaN)."""
    header = {"alg": "RS256", "kid": key.kid}

    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    body = f"{part(header)}.{part(payload)}".encode()
    signature = key.private_key.sign(body, padding.PKCS1v15(), hashes.SHA256())  # type: ignore[union-attr]
    return f"{body.decode()}.{base64.urlsafe_b64encode(signature).decode().rstrip('=')}"


def unsigned(header: dict[str, Any], payload: dict[str, Any], sign: bytes | None = None) -> str:
    """A JWT put together by hand (what no JOSE library would make): ``sign`` is the HMAC key."""

    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    body = f"{part(header)}.{part(payload)}"
    if sign is None:
        return f"{body}."
    mac = hmac.new(sign, body.encode(), hashlib.sha256).digest()
    return f"{body}.{base64.urlsafe_b64encode(mac).decode().rstrip('=')}"


async def test_a_service_accounts_token_passes_with_its_mapped_role(
    checker: Provider, provider: RunningProvider
) -> None:
    token = provider.service_account_token()
    verified = await checker.verify_access_token(token)
    assert verified.subject == SCRIPTS_CLIENT
    assert verified.role is Role.editor  # the account is in qr-editors
    assert verified.machine
    # A person's token (the provider's key, the subject a person's, an e-mail): a person.
    key = provider.keys[0]
    person = await checker.verify_access_token(
        signed(key, claims(provider, sub="alice", email="alice@example.org", client_id="qr-console"))
    )
    assert (person.subject, person.email, person.role, person.machine) == (
        "alice",
        "alice@example.org",
        Role.admin,
        False,
    )


FORGERIES = [
    "alg none",
    "HS256 with the public key",
    "wrong issuer",
    "wrong audience",
    "expired",
    "another key",
    "an ID token (its nonce)",
    "an ID token (typ ID)",
    "an ID token (header typ)",
    "never expires (exp NaN)",
    "not valid yet (nbf)",
    "iat not a time",
]


def forged(provider: RunningProvider, forgery: str) -> str:
    """A token made wrong in exactly the way ``forgery`` (one of FORGERIES) names."""
    key = provider.keys[0]
    if forgery == "alg none":
        return unsigned({"alg": "none", "typ": "JWT"}, claims(provider))
    if forgery == "HS256 with the public key":
        public = key.as_pem(private=False)
        return unsigned({"alg": "HS256", "kid": key.kid}, claims(provider), sign=public)
    if forgery == "wrong issuer":
        return signed(key, claims(provider, iss="https://sso.example.org/realms/other"))
    if forgery == "wrong audience":
        return signed(key, claims(provider, aud=["https://other.example/api", "account"]))
    if forgery == "expired":
        return signed(key, claims(provider, iat=int(time.time()) - 7200, exp=int(time.time()) - 3600))
    if forgery == "an ID token (its nonce)":
        return signed(key, claims(provider, nonce="n-0S6_WzA2Mj"))
    if forgery == "an ID token (typ ID)":
        return signed(key, claims(provider, typ="ID"))
    if forgery == "an ID token (header typ)":
        return jwt.encode({"alg": "RS256", "kid": key.kid, "typ": "id_token+jwt"}, claims(provider), key)
    if forgery == "never expires (exp NaN)":
        return unsigned_signed(key, claims(provider, exp=float("nan")))
    if forgery == "not valid yet (nbf)":
        return signed(key, claims(provider, nbf=int(time.time()) + 3600))
    if forgery == "iat not a time":
        return signed(key, claims(provider, iat="x"))
    return signed(signing_key(key.kid), claims(provider))  # the same key id, another key


@pytest.mark.parametrize("forgery", FORGERIES)
async def test_a_forged_token_is_refused_and_not_logged(
    checker: Provider, provider: RunningProvider, forgery: str, caplog: pytest.LogCaptureFixture
) -> None:
    token = forged(provider, forgery)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(Unauthorized) as refused:
        await checker.verify_access_token(token)
    assert refused.value.message == "the bearer token is not valid here"
    assert caplog.records, "the reason is logged"
    signature = token.rsplit(".", 1)[1] or token
    for record in caplog.records:
        logged = record.getMessage() + repr(record.__dict__)
        assert token not in logged
        assert signature not in logged


async def test_a_token_whose_groups_map_to_no_role_is_forbidden(
    checker: Provider, provider: RunningProvider
) -> None:
    with pytest.raises(Forbidden):
        await checker.verify_access_token(signed(provider.keys[0], claims(provider, groups=["staff"])))


async def test_an_unknown_key_id_fetches_the_keys_again_once_a_minute_at_most(
    provider: RunningProvider, tmp_path: Path
) -> None:
    settings = oidc_settings(provider, tmp_path)
    eager, patient = Provider(settings, keys_refetch_seconds=0), Provider(settings)
    try:
        first = signed(provider.keys[0], claims(provider))
        for checking in (eager, patient):
            assert (await checking.verify_access_token(first)).role is Role.admin  # the keys, kept
        rolled = signing_key("test-key-2")
        provider.stop()
        provider.keys = [rolled, provider.keys[0]]  # the provider rolls its keys over
        provider.start()
        second = signed(rolled, claims(provider))
        assert (await eager.verify_access_token(second)).role is Role.admin
        with pytest.raises(Unauthorized):  # fetched less than a minute ago: not again
            await patient.verify_access_token(second)
    finally:
        await eager.close()
        await patient.close()


async def test_with_the_provider_away_known_keys_go_on_and_unknown_ones_get_503(
    checker: Provider, provider: RunningProvider, tmp_path: Path
) -> None:
    token = signed(provider.keys[0], claims(provider))
    assert (await checker.verify_access_token(token)).role is Role.admin  # the keys, kept
    never_fetched = Provider(oidc_settings(provider, tmp_path))
    provider.stop()
    try:
        assert (await checker.verify_access_token(token)).role is Role.admin
        with pytest.raises(Unavailable) as away:
            await never_fetched.verify_access_token(token)
        assert away.value.status == 503
    finally:
        await never_fetched.close()
