from __future__ import annotations

from pathlib import Path

import pytest

from services.management.settings import ManagementSettings
from services.redirect.settings import RedirectSettings
from shared.settings import ConfigError, parse_networks, read_database_url

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
        ({"DATABASE_URL": DSN, "REDIRECT_DB_POOL_SIZE": "0"}, "REDIRECT_DB_POOL_SIZE must be between"),
        ({"DATABASE_URL": DSN, "REDIRECT_DB_POOL_SIZE": "-4"}, "REDIRECT_DB_POOL_SIZE must be between"),
        ({"DATABASE_URL": DSN, "REDIRECT_DB_POOL_SIZE": "501"}, "REDIRECT_DB_POOL_SIZE must be between"),
        ({"DATABASE_URL": DSN, "REDIRECT_DB_POOL_SIZE": "8.5"}, "REDIRECT_DB_POOL_SIZE must be a whole"),
        (
            {"DATABASE_URL": DSN, "REDIRECT_DB_STATEMENT_CACHE_SIZE": "-1"},
            "REDIRECT_DB_STATEMENT_CACHE_SIZE must be between 0 and 10000, got -1",
        ),
        (
            {"DATABASE_URL": DSN, "REDIRECT_DB_STATEMENT_CACHE_SIZE": "10001"},
            "REDIRECT_DB_STATEMENT_CACHE_SIZE must be between",
        ),
        (
            {"DATABASE_URL": DSN, "REDIRECT_DB_STATEMENT_CACHE_SIZE": "off"},
            "REDIRECT_DB_STATEMENT_CACHE_SIZE must be a whole number, got 'off'",
        ),
        (
            {"DATABASE_URL": DSN, "REDIRECT_DB_STATEMENT_CACHE_SIZE": "1e3"},
            "REDIRECT_DB_STATEMENT_CACHE_SIZE must be a whole number",
        ),
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
        ({"MANAGEMENT_DB_POOL_SIZE": "0"}, "MANAGEMENT_DB_POOL_SIZE must be between 1 and 200, got 0"),
        ({"MANAGEMENT_DB_POOL_SIZE": "-1"}, "MANAGEMENT_DB_POOL_SIZE must be between"),
        ({"MANAGEMENT_DB_POOL_SIZE": "201"}, "MANAGEMENT_DB_POOL_SIZE must be between"),
        ({"MANAGEMENT_DB_POOL_SIZE": "four"}, "MANAGEMENT_DB_POOL_SIZE must be a whole number, got 'four'"),
        (
            {"MANAGEMENT_DB_MAX_OVERFLOW": "-1"},
            "MANAGEMENT_DB_MAX_OVERFLOW must be between 0 and 200, got -1",
        ),
        ({"MANAGEMENT_DB_MAX_OVERFLOW": "9" * 30}, "MANAGEMENT_DB_MAX_OVERFLOW must be between"),
        ({"MANAGEMENT_DB_MAX_OVERFLOW": "0x10"}, "MANAGEMENT_DB_MAX_OVERFLOW must be a whole number"),
    ],
)
def test_management_settings_refuse_bad_values(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ManagementSettings.from_env({"DATABASE_URL": DSN, **environ})


def test_pool_settings_defaults_and_overrides() -> None:
    redirect = RedirectSettings.from_env({"DATABASE_URL": DSN})
    assert (redirect.db_pool_size, redirect.db_statement_cache_size) == (16, 100)
    redirect = RedirectSettings.from_env(
        {"DATABASE_URL": DSN, "REDIRECT_DB_POOL_SIZE": " 4 ", "REDIRECT_DB_STATEMENT_CACHE_SIZE": "0"}
    )
    assert (redirect.db_pool_size, redirect.db_statement_cache_size) == (4, 0)
    management = ManagementSettings.from_env({"DATABASE_URL": DSN})
    assert (management.db_pool_size, management.db_max_overflow) == (4, 4)
    management = ManagementSettings.from_env(
        {"DATABASE_URL": DSN, "MANAGEMENT_DB_POOL_SIZE": "10", "MANAGEMENT_DB_MAX_OVERFLOW": "0"}
    )
    assert (management.db_pool_size, management.db_max_overflow) == (10, 0)


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
    # libpq also takes the password from the query string: it must not reach a process list either.
    query = "postgresql://qr@db/qr?sslmode=require&password=s%20cret"
    assert split_password(query) == ("postgresql://qr@db/qr?sslmode=require", "s cret")
    assert redacted(query) == "postgresql://qr@db/qr?sslmode=require&password=***"
    assert redacted(DSN) == DSN


# -- DATABASE_PASSWORD_FILE: the password as a file (a container secret), never in the environment ---


def test_a_password_file_completes_both_database_urls(tmp_path: Path) -> None:
    from urllib.parse import urlsplit

    from shared.database import split_password

    secret = tmp_path / "postgres_password"
    password = "p@ss:w/rd#?%&é"  # every character a URL would mangle
    secret.write_text(password + "\n")
    environ = {
        "DATABASE_URL": "postgresql://qr@db:5432/qr",
        "REDIRECT_DATABASE_URL": "postgresql://qr@pgbouncer:6432/qr?sslmode=disable",
        "DATABASE_PASSWORD_FILE": str(secret),
        "PUBLIC_BASE_URL": "https://qr.example.org",
    }
    url = read_database_url(environ)
    assert split_password(url)[1] == password
    assert urlsplit(url).hostname == "db"
    lookups = read_database_url(environ, "REDIRECT_DATABASE_URL")
    assert split_password(lookups)[1] == password
    assert lookups.endswith("/qr?sslmode=disable")
    settings = RedirectSettings.from_env(environ)
    assert split_password(settings.primary_database_url)[1] == password
    assert split_password(settings.lookup_database_url)[1] == password
    assert read_database_url({"DATABASE_URL": "postgresql://qr@db/qr"}) == "postgresql://qr@db/qr"  # no file


@pytest.mark.parametrize(
    ("url", "content", "message"),
    [
        ("postgresql://qr:inline@db/qr", "secret", "keep only one"),
        ("postgresql://qr@db/qr?password=inline", "secret", "keep only one"),
        ("postgresql://db/qr", "secret", "names no user"),
        ("postgresql://qr@db/qr", "", "holds no password"),
        ("postgresql://qr@db/qr", "\n\n", "holds no password"),
        ("postgresql://qr@db/qr", "one\ntwo\n", "more than one line"),
        ("postgresql://qr@db/qr", "x" * 5000, "larger than 4096 bytes"),
        ("postgresql://qr@db/qr", None, "cannot be read"),
    ],
)
def test_a_bad_password_file_is_refused_without_showing_it(
    tmp_path: Path, url: str, content: str | None, message: str
) -> None:
    secret = tmp_path / "postgres_password"
    if content is not None:
        secret.write_text(content)
    with pytest.raises(ConfigError, match=message) as refused:
        read_database_url({"DATABASE_URL": url, "DATABASE_PASSWORD_FILE": str(secret)})
    assert "secret" not in str(refused.value).replace("postgres_password", "")
    assert "inline" not in str(refused.value)


def test_a_password_file_that_is_not_text_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "postgres_password"
    secret.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        read_database_url({"DATABASE_URL": "postgresql://qr@db/qr", "DATABASE_PASSWORD_FILE": str(secret)})
