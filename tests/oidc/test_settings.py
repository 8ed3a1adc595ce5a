"""The OIDC_* settings: read once, refused with a message naming the variable; the role map."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.management.auth.oidc import groups_in, role_for
from services.management.auth.roles import Role
from services.management.settings import ManagementSettings, OidcSettings
from shared.settings import ConfigError


@pytest.fixture
def oidc_environ(tmp_path: Path) -> dict[str, str]:
    secret = tmp_path / "client-secret"
    secret.write_text("s3cret-value\n")
    return {
        "OIDC_ISSUER": "https://sso.example.org/realms/acme",
        "OIDC_CLIENT_ID": "qr-console",
        "OIDC_CLIENT_SECRET_FILE": str(secret),
        "OIDC_ROLE_MAP": "qr-admins=admin, qr-editors=editor",
    }


def test_without_an_issuer_there_is_no_provider() -> None:
    assert OidcSettings.from_env({}) is None
    settings = ManagementSettings.from_env({"DATABASE_URL": "postgresql://u@h/db"})
    assert settings.oidc is None


def test_the_settings_and_their_defaults(oidc_environ: dict[str, str]) -> None:
    settings = OidcSettings.from_env(oidc_environ)
    assert settings is not None
    assert settings.client_secret == "s3cret-value"
    assert "s3cret" not in repr(settings)  # never in a log line or a traceback's locals
    assert settings.roles_claim == "groups"
    assert settings.audience == "qr-console"  # the client id, unless OIDC_AUDIENCE says otherwise
    assert settings.role_map == (("qr-admins", Role.admin), ("qr-editors", Role.editor))
    dotted = OidcSettings.from_env(
        {**oidc_environ, "OIDC_ROLES_CLAIM": "realm_access.roles", "OIDC_AUDIENCE": "qr-api"}
    )
    assert dotted is not None
    assert (dotted.roles_claim, dotted.audience) == ("realm_access.roles", "qr-api")


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("OIDC_ISSUER", "http://sso.example.org/realms/acme", "must be https"),
        ("OIDC_ISSUER", "sso.example.org", "OIDC_ISSUER must be the provider's https URL"),
        ("OIDC_CLIENT_ID", "", "OIDC_CLIENT_ID must be set"),
        ("OIDC_CLIENT_SECRET_FILE", "/nonexistent/secret", "cannot be read"),
        ("OIDC_ROLE_MAP", "", "OIDC_ROLE_MAP must be set"),
        ("OIDC_ROLE_MAP", "qr-admins:admin", "is not group=role"),
        ("OIDC_ROLE_MAP", "qr-admins=root", "'root' is not a role"),
        ("OIDC_ROLE_MAP", "a=admin,a=viewer", "names 'a' twice"),
        ("OIDC_ROLES_CLAIM", "realm_access..roles", "dotted path"),
    ],
)
def test_a_bad_setting_is_refused_by_name(
    oidc_environ: dict[str, str], name: str, value: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        OidcSettings.from_env({**oidc_environ, name: value})


def test_plain_http_only_for_a_provider_on_this_machine(oidc_environ: dict[str, str]) -> None:
    for issuer in ("http://127.0.0.1:9000", "http://localhost:9000/realms/test"):
        settings = OidcSettings.from_env({**oidc_environ, "OIDC_ISSUER": issuer})
        assert settings is not None
        assert settings.issuer == issuer


def test_a_secret_file_of_two_lines_is_refused(oidc_environ: dict[str, str], tmp_path: Path) -> None:
    two = tmp_path / "two"
    two.write_text("one\ntwo\n")
    with pytest.raises(ConfigError, match="alone on one line"):
        OidcSettings.from_env({**oidc_environ, "OIDC_CLIENT_SECRET_FILE": str(two)})


def test_another_oidc_setting_without_the_issuer_is_refused() -> None:
    with pytest.raises(ConfigError, match="OIDC_CLIENT_ID is set but OIDC_ISSUER is not"):
        OidcSettings.from_env({"OIDC_CLIENT_ID": "qr-console"})


def test_the_highest_mapped_role_wins_and_no_match_is_no_access() -> None:
    role_map = (("qr-viewers", Role.viewer), ("qr-admins", Role.admin), ("qr-editors", Role.editor))
    assert role_for(["staff", "qr-viewers", "qr-editors"], role_map) is Role.editor
    assert role_for(["qr-admins", "qr-viewers"], role_map) is Role.admin
    assert role_for(["staff"], role_map) is None
    assert role_for([], role_map) is None


def test_groups_at_a_dotted_path() -> None:
    claims = {"realm_access": {"roles": ["qr-admins", 7]}, "groups": "qr-editors"}
    assert groups_in(claims, "realm_access.roles") == ["qr-admins"]
    assert groups_in(claims, "groups") == ["qr-editors"]  # one name, not a list
    assert groups_in(claims, "resource_access.qr.roles") == []
    assert groups_in({"realm_access": "x"}, "realm_access.roles") == []


def test_the_provider_implies_admin_auth_identity(oidc_environ: dict[str, str]) -> None:
    settings = ManagementSettings.from_env({"DATABASE_URL": "postgresql://u@h/db", **oidc_environ})
    assert settings.admin_auth == "identity"
    assert settings.oidc is not None
