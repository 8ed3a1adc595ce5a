"""Reading configuration from an explicit environment mapping, failing fast with a clear message.

Each service has a frozen settings dataclass with a ``from_env(environ)`` constructor built on these
readers; nothing reads ``os.environ`` at import time.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
# The default of ADMIN_ALLOWLIST and TRUSTED_PROXIES: this machine only.
LOOPBACK_NETWORKS = "127.0.0.1/32,::1/128"


class ConfigError(ValueError):
    """A configuration value is missing or malformed; the message names the variable."""


def read_str(environ: Mapping[str, str], name: str, default: str) -> str:
    value = environ.get(name, "").strip()
    return value or default


def read_required(environ: Mapping[str, str], name: str) -> str:
    value = environ.get(name, "").strip()
    if not value:
        raise ConfigError(f"{name} must be set")
    return value


def read_int(environ: Mapping[str, str], name: str, default: int, *, minimum: int, maximum: int) -> int:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if not minimum <= value <= maximum:
        raise ConfigError(f"{name} must be between {minimum} and {maximum}, got {value}")
    return value


def read_float(
    environ: Mapping[str, str], name: str, default: float, *, minimum: float, maximum: float
) -> float:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if not minimum <= value <= maximum:  # also refuses nan
        raise ConfigError(f"{name} must be between {minimum} and {maximum}, got {raw}")
    return value


def read_bool(environ: Mapping[str, str], name: str, default: bool) -> bool:
    raw = environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def parse_networks(name: str, raw: str) -> tuple[Network, ...]:
    """Comma-separated CIDRs (a bare address means one host); empty or malformed is an error."""
    items = [item.strip() for item in raw.split(",")]
    if not any(items):
        raise ConfigError(f"{name} must list at least one address or CIDR")
    networks = []
    for item in items:
        if not item:
            raise ConfigError(f"{name} has an empty entry in {raw!r}")
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ConfigError(f"{name}: {item!r} is not an IP address or CIDR") from None
    return tuple(networks)


def read_networks(environ: Mapping[str, str], name: str, default: str) -> tuple[Network, ...]:
    raw = environ.get(name)
    return parse_networks(name, default if raw is None else raw)


_HOST_NAME = re.compile(
    r"(?=.{1,253}$)[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*\.?"
)


def read_host_names(environ: Mapping[str, str], name: str, default: str) -> frozenset[str]:
    """Comma-separated host names or IP addresses (no ports); empty or malformed is an error."""
    raw = environ.get(name)
    items = [item.strip().lower() for item in (default if raw is None else raw).split(",")]
    if not any(items):
        raise ConfigError(f"{name} must list at least one host name")
    hosts = set()
    for item in items:
        bare = item.strip("[]")
        try:
            ipaddress.ip_address(bare)
            hosts.add(bare)
            continue
        except ValueError:
            pass
        if not _HOST_NAME.fullmatch(item):
            raise ConfigError(f"{name}: {item!r} is not a host name or IP address (no ports, no schemes)")
        hosts.add(item.rstrip("."))
    return frozenset(hosts)


def read_base_url(environ: Mapping[str, str], name: str, default: str) -> str:
    """An absolute http(s) URL without query or fragment, returned without a trailing slash."""
    raw = read_str(environ, name, default)
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ConfigError(f"{name} must be an absolute http(s) URL like https://qr.example.org, got {raw!r}")
    if "@" in parts.netloc:
        raise ConfigError(f"{name} must not contain credentials")
    if parts.path not in ("", "/"):
        # The edge routes /r/ at the root; a path prefix would print links nothing answers.
        raise ConfigError(f"{name} must be a scheme and host (and port) without a path, got {raw!r}")
    try:
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        raise ConfigError(f"{name} has an invalid port: {raw!r}") from None
    return raw.rstrip("/")


def read_log_level(environ: Mapping[str, str]) -> str:
    level = read_str(environ, "LOG_LEVEL", "INFO").upper()
    if level not in LOG_LEVELS:
        raise ConfigError(f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {level!r}")
    return level


MAX_PASSWORD_FILE_BYTES = 4096


def read_database_url(environ: Mapping[str, str], name: str = "DATABASE_URL") -> str:
    """A PostgreSQL DSN in libpq URL form (``postgresql://`` or ``postgres://``, any driver suffix).

    With ``DATABASE_PASSWORD_FILE`` (a container secret, say), a URL without a password gets the
    file's contents as its password (one line; any characters, encoded for the URL here), so that
    the password lives in neither the environment nor the image."""
    raw = read_required(environ, name)
    parts = urlsplit(raw)
    if parts.scheme.split("+", 1)[0] not in ("postgresql", "postgres"):
        raise ConfigError(f"{name} must be a postgresql:// URL")
    password_file = environ.get("DATABASE_PASSWORD_FILE", "").strip()
    if not password_file:
        return raw
    if parts.password is not None or any(key == "password" for key, _ in parse_qsl(parts.query)):
        raise ConfigError(f"{name} has a password and DATABASE_PASSWORD_FILE is set: keep only one")
    if not parts.username:
        raise ConfigError(f"{name} names no user for the password in DATABASE_PASSWORD_FILE")
    password = _read_password_file(Path(password_file))
    host = parts.netloc.rpartition("@")[2]
    netloc = f"{parts.username}:{quote(password, safe='')}@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _read_password_file(path: Path) -> str:
    """The password in ``path``: its first line, without the line end. The messages never show it."""
    try:
        with path.open("rb") as file:
            content = file.read(MAX_PASSWORD_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"DATABASE_PASSWORD_FILE {path} cannot be read ({exc.strerror})") from None
    if len(content) > MAX_PASSWORD_FILE_BYTES:
        raise ConfigError(f"DATABASE_PASSWORD_FILE {path} is larger than {MAX_PASSWORD_FILE_BYTES} bytes")
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"DATABASE_PASSWORD_FILE {path} is not UTF-8 text") from None
    lines = text.splitlines()
    password = lines[0] if lines else ""
    if not password or "\x00" in password:
        raise ConfigError(f"DATABASE_PASSWORD_FILE {path} holds no password on its first line")
    if any(line.strip() for line in lines[1:]):
        raise ConfigError(f"DATABASE_PASSWORD_FILE {path} has more than one line")
    return password
