from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from services.ops import edge
from services.ops.settings import StackSettings
from shared.settings import ConfigError


@pytest.mark.parametrize("name", sorted(edge.STATIC_FILES))
def test_the_compose_static_files_are_the_generated_ones(name: str) -> None:
    committed = (edge.INFRA_DIR / name).read_text()
    assert committed == edge.compose_static(name), (
        f"regenerate infra/traefik/{name} with services.ops.edge.compose_static({name!r})"
    )


def test_https_only_redirects_plain_http_and_declares_the_resolver() -> None:
    addresses = edge.EdgeAddresses(http=":80", https=":443", admin=":8082")
    local = edge.static_config(addresses, dynamic_file="/d.yml")
    assert "redirections" not in local
    assert "certificatesResolvers" not in local
    production = edge.static_config(
        addresses, dynamic_file="/d.yml", options=edge.EdgeOptions(https_only=True)
    )
    assert "to: websecure" in production
    assert "letsencrypt" in production


def test_the_certificate_is_made_once(tmp_path: Path) -> None:
    cert, key = edge.ensure_certificate(tmp_path)
    assert cert.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    assert key.stat().st_mode & 0o077 == 0
    first = cert.read_bytes()
    assert edge.ensure_certificate(tmp_path) == (cert, key)
    assert cert.read_bytes() == first


def test_the_certificate_lives_under_a_year_and_is_renewed_a_month_before_it_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cryptography import x509

    cert, _ = edge.ensure_certificate(tmp_path)
    made = x509.load_pem_x509_certificate(cert.read_bytes())
    assert (made.not_valid_after_utc - made.not_valid_before_utc).days < 366  # Mozilla's bound
    first = cert.read_bytes()
    in_ten_months = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=300)
    assert edge.ensure_certificate(tmp_path, now=in_ten_months)[0].read_bytes() == first  # still good
    in_eleven_months = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=340)
    edge.ensure_certificate(tmp_path, now=in_eleven_months)
    assert cert.read_bytes() != first  # renewed with a month left
    # One made for 825 days (as an older version did) is made again at the next start, a damaged one too.
    with monkeypatch.context() as patched:
        patched.setattr(edge, "CERT_VALIDITY", datetime.timedelta(days=825))
        old, _ = edge.ensure_certificate(tmp_path / "old")
    long_lived = old.read_bytes()
    edge.ensure_certificate(tmp_path / "old")
    assert old.read_bytes() != long_lived
    cert.write_text("not a certificate")
    edge.ensure_certificate(tmp_path)
    assert x509.load_pem_x509_certificate(cert.read_bytes())


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"ADMIN_ALLOWLIST": ""}, "ADMIN_ALLOWLIST"),
        ({"ADMIN_ALLOWLIST": " , "}, "ADMIN_ALLOWLIST"),
        ({"ADMIN_ALLOWLIST": "127.0.0.1/40"}, "ADMIN_ALLOWLIST"),
        ({"ADMIN_ALLOWLIST": "localhost"}, "ADMIN_ALLOWLIST"),
        ({"EDGE_HTTP_PORT": "8001"}, "differ"),
        ({"EDGE_HTTP_PORT": "http"}, "EDGE_HTTP_PORT"),
        ({"REDIRECT_WORKERS": "0"}, "REDIRECT_WORKERS"),
        ({"RATE_LIMIT_AVERAGE": "-1"}, "RATE_LIMIT_AVERAGE"),
        ({"BACKUP_RETENTION": "none"}, "BACKUP_RETENTION"),
        ({"DATABASE_URL": "sqlite:///x"}, "DATABASE_URL"),
        ({"ADMIN_HOSTS": ""}, "ADMIN_HOSTS"),
        ({"ADMIN_HOSTS": "evil`) || Host(`x"}, "ADMIN_HOSTS"),
        ({"ADMIN_HOSTS": "localhost:8080"}, "ADMIN_HOSTS"),
        ({"EDGE_TRUSTED_PROXIES": "10.0.0.0/33"}, "EDGE_TRUSTED_PROXIES"),
        ({"EDGE_TRUSTED_PROXIES": '10.0.0.1"]'}, "EDGE_TRUSTED_PROXIES"),
        ({"REDIRECT_BACKEND_TIMEOUT": "0"}, "REDIRECT_BACKEND_TIMEOUT"),
        ({"MANAGEMENT_BACKEND_TIMEOUT": "5s"}, "MANAGEMENT_BACKEND_TIMEOUT"),
        # past the longest a backend may keep the client waiting for its first byte
        ({"MANAGEMENT_BACKEND_TIMEOUT": "60"}, "MANAGEMENT_BACKEND_TIMEOUT"),
        ({"REDIRECT_BACKEND_TIMEOUT": "51"}, "REDIRECT_BACKEND_TIMEOUT"),
        ({"EDGE_GOGC": "off"}, "EDGE_GOGC"),
        ({"EDGE_GOGC": "10"}, "EDGE_GOGC"),
        ({"EDGE_TLS_CERT": "/etc/hostname"}, "together"),
        ({"EDGE_TLS_CERT": "/nonexistent/cert.pem", "EDGE_TLS_KEY": "/etc/hostname"}, "EDGE_TLS_CERT"),
    ],
)
def test_stack_settings_refuse_mistakes_before_anything_starts(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        StackSettings.from_env(environ)


def test_stack_settings_defaults_follow_the_ports() -> None:
    settings = StackSettings.from_env({"EDGE_HTTP_PORT": "9080"})
    assert settings.public_base_url == "http://localhost:9080"
    assert settings.ops.var_dir.name == "var"
    assert settings.ops.var_dir.is_absolute()
    assert settings.ops.database_url is None
