"""Where qrctl finds the API, and its token.

The API URL comes from ``--api-url``, else ``QR_API_URL``, else ``api_url`` in
``$XDG_CONFIG_HOME/qrctl/config.toml`` (``~/.config/qrctl/config.toml``), else
``http://127.0.0.1:8080``. A bearer token is read from a file (``--token-file``, ``QR_API_TOKEN_FILE``
or ``token_file`` in the config file), never from the command line, where ``ps`` and shell history
would show it; it is sent only when given.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

DEFAULT_API_URL = "http://127.0.0.1:8080"


class ConfigProblem(Exception):
    """A setting cannot be used; the message says which and why."""


@dataclass(frozen=True)
class Config:
    api_url: str
    token: str | None
    timeout: float
    retries: int


def config_file(environ: Mapping[str, str]) -> Path:
    base = environ.get("XDG_CONFIG_HOME") or str(Path(environ.get("HOME", "~")).expanduser() / ".config")
    return Path(base) / "qrctl" / "config.toml"


def _file_settings(environ: Mapping[str, str]) -> dict[str, object]:
    path = config_file(environ)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigProblem(f"cannot read {path}: {exc.strerror}") from None
    try:
        settings = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigProblem(f"{path} is not valid TOML: {exc}") from None
    unknown = set(settings) - {"api_url", "token_file", "timeout"}
    if unknown:
        raise ConfigProblem(
            f"{path}: unknown settings {', '.join(sorted(unknown))} (api_url, token_file, timeout)"
        )
    return settings


def _check_url(url: object, source: str) -> str:
    if not isinstance(url, str):
        raise ConfigProblem(f"the API URL from {source} must be text")
    parts = urlsplit(url)
    if "@" in parts.netloc:
        # Refused without echoing it: it would print the password into logs and terminals.
        raise ConfigProblem(
            f"the API URL from {source} must not carry a user or password; put a token in a token file"
        )
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigProblem(f"the API URL from {source} must look like http://host:port, got {url!r}")
    return url.rstrip("/")


def _read_token(path: object, source: str) -> str:
    if not isinstance(path, str) or not path:
        raise ConfigProblem(f"the token file from {source} must be a path")
    try:
        token = Path(path).expanduser().read_text().strip()
    except OSError as exc:
        raise ConfigProblem(f"cannot read the token file {path} (from {source}): {exc.strerror}") from None
    if not token or any(ch.isspace() or not ch.isprintable() for ch in token):
        raise ConfigProblem(f"the token file {path} (from {source}) must hold one token on one line")
    return token


def load(
    environ: Mapping[str, str],
    *,
    api_url: str | None,
    token_file: str | None,
    timeout: float | None,
    retries: int,
) -> Config:
    settings = _file_settings(environ)
    where = str(config_file(environ))
    if api_url is not None:
        url = _check_url(api_url, "--api-url")
    elif environ.get("QR_API_URL"):
        url = _check_url(environ["QR_API_URL"], "QR_API_URL")
    elif "api_url" in settings:
        url = _check_url(settings["api_url"], where)
    else:
        url = DEFAULT_API_URL
    token = None
    if token_file is not None:
        token = _read_token(token_file, "--token-file")
    elif environ.get("QR_API_TOKEN_FILE"):
        token = _read_token(environ["QR_API_TOKEN_FILE"], "QR_API_TOKEN_FILE")
    elif "token_file" in settings:
        token = _read_token(settings["token_file"], where)
    seconds = timeout if timeout is not None else settings.get("timeout", 10.0)
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0 < seconds <= 600:
        raise ConfigProblem(f"the timeout must be a number of seconds from 0 to 600, got {seconds!r}")
    return Config(api_url=url, token=token, timeout=float(seconds), retries=retries)


def environment() -> Mapping[str, str]:
    return os.environ
