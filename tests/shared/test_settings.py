from __future__ import annotations

import pytest

from services.management.settings import ManagementSettings
from services.redirect.settings import RedirectSettings
from shared.settings import ConfigError, parse_networks

DSN = "postgresql://postgres@/qr?host=/tmp"


def test_redirect_settings_defaults_and_overrides() -> None:
    settings = RedirectSettings.from_env({"DATABASE_URL": DSN})
    assert settings.lookup_database_url == settings.primary_database_url == DSN
    replica = "postgresql://reader@replica/qr"
    settings = RedirectSettings.from_env(
        {"DATABASE_URL": DSN, "REDIRECT_DATABASE_URL": replica, "REDIRECT_CACHE_SIZE": "10"}
    )
    assert settings.lookup_database_url == replica
    assert settings.primary_database_url == DSN
    assert settings.cache_max_entries == 10


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({}, "DATABASE_URL must be set"),
        ({"DATABASE_URL": "mysql://x/y"}, "postgresql://"),
        ({"DATABASE_URL": DSN, "REDIRECT_CACHE_SIZE": "lots"}, "REDIRECT_CACHE_SIZE"),
        ({"DATABASE_URL": DSN, "REDIRECT_CACHE_SIZE": "0"}, "between"),
        ({"DATABASE_URL": DSN, "REDIRECT_CACHE_TTL": "nan"}, "REDIRECT_CACHE_TTL"),
        ({"DATABASE_URL": DSN, "REDIRECT_CACHE_TTL": "-1"}, "REDIRECT_CACHE_TTL"),
        ({"DATABASE_URL": DSN, "LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
    ],
)
def test_redirect_settings_refuse_bad_values(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        RedirectSettings.from_env(environ)


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"PUBLIC_BASE_URL": "ftp://x"}, "PUBLIC_BASE_URL"),
        ({"PUBLIC_BASE_URL": "localhost:8080"}, "PUBLIC_BASE_URL"),
        ({"PUBLIC_BASE_URL": "https://u:p@qr.example"}, "credentials"),
        ({"PUBLIC_BASE_URL": "https://qr.example/?x=1"}, "PUBLIC_BASE_URL"),
        ({"PUBLIC_BASE_URL": "https://qr.example/qr"}, "without a path"),
        ({"PUBLIC_BASE_URL": "https://qr.example:http"}, "port"),
        ({"ADMIN_ALLOWLIST": ""}, "ADMIN_ALLOWLIST must list"),
        ({"ADMIN_ALLOWLIST": "10.0.0.0/8,,"}, "empty entry"),
        ({"ADMIN_ALLOWLIST": "10.0.0.0/33"}, "not an IP address"),
        ({"TRUSTED_PROXIES": "everyone"}, "TRUSTED_PROXIES"),
        ({"MANAGEMENT_PORT": "70000"}, "MANAGEMENT_PORT"),
    ],
)
def test_management_settings_refuse_bad_values(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ManagementSettings.from_env({"DATABASE_URL": DSN, **environ})


def test_management_settings_normalise() -> None:
    settings = ManagementSettings.from_env(
        {"DATABASE_URL": DSN, "PUBLIC_BASE_URL": "https://qr.example.org/"}
    )
    assert settings.public_base_url == "https://qr.example.org"
    assert settings.own_hosts == frozenset({"qr.example.org"})


def test_networks_accept_bare_addresses_and_spaces() -> None:
    networks = parse_networks("X", " 10.0.0.1 , ::1/128,192.168.0.0/16")
    assert [str(n) for n in networks] == ["10.0.0.1/32", "::1/128", "192.168.0.0/16"]


def test_passwords_are_split_out_decoded_and_redacted() -> None:
    from shared.database import redacted, split_password

    url = "postgresql://qr:p%40ss%2Fw@db.example:5432/qr?sslmode=require"
    assert split_password(url) == ("postgresql://qr@db.example:5432/qr?sslmode=require", "p@ss/w")
    assert redacted(url) == "postgresql://qr:***@db.example:5432/qr?sslmode=require"
    assert split_password(DSN) == (DSN, None)
    assert redacted(DSN) == DSN
