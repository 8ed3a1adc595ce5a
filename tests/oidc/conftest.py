"""A real OpenID Certified provider for the tests: oidc-provider (tests/oidc/provider.mjs) on Node,
installed once with ``npm ci`` into tests/oidc/node_modules (git-ignored) and started per test (or
per module) on a free port of 127.0.0.1, stopped by its pid.

The tests hold the provider's signing key (a JWK set they make and give it), so they can forge
tokens that are well signed and wrong in one way only: issuer, audience, expiry.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from joserfc.jwk import KeySet, RSAKey

from tests.management.conftest import environ, settings

__all__ = ["environ", "settings"]

HERE = Path(__file__).parent
CONSOLE_CLIENT = "qr-console"
CONSOLE_SECRET = "console-secret-for-tests-only"
SCRIPTS_CLIENT = "qr-scripts"
SCRIPTS_SECRET = "scripts-secret-for-tests-only"
AUDIENCE = "https://qr.test/api"
ROLE_MAP = "qr-admins=admin,qr-editors=editor,qr-viewers=viewer"


@pytest.fixture(scope="session")
def node_modules() -> Path:
    """oidc-provider installed (``npm ci``, once; kept in the checkout); the test is skipped in
    one line without node or npm, or when the registry cannot be reached."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("oidc-provider tests need node and npm (not found)")
    installed = HERE / "node_modules" / "oidc-provider" / "package.json"
    lock = HERE / "package-lock.json"
    if not installed.exists() or installed.stat().st_mtime < lock.stat().st_mtime:
        result = subprocess.run(
            [npm, "ci", "--prefix", str(HERE), "--no-audit", "--no-fund"],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if result.returncode != 0:
            last = (result.stderr.strip().splitlines() or ["no output"])[-1]
            pytest.skip(f"oidc-provider cannot be installed with npm ci: {last}")
    return HERE / "node_modules"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def signing_key(kid: str) -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": kid, "alg": "RS256", "use": "sig"}, private=True)


@dataclass
class RunningProvider:
    """oidc-provider on 127.0.0.1:``port``, with the console's redirect URIs and signing keys given."""

    redirect_uris: list[str]
    logout_uris: list[str]
    keys: list[RSAKey] = field(default_factory=lambda: [signing_key("test-key-1")])
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[str] | None = None

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PROVIDER_PORT": str(self.port),
            "PROVIDER_JWKS": json.dumps(KeySet(self.keys).as_dict(private=True)),
            "CONSOLE_CLIENT_SECRET": CONSOLE_SECRET,
            "CONSOLE_REDIRECT_URIS": ",".join(self.redirect_uris),
            "CONSOLE_LOGOUT_URIS": ",".join(self.logout_uris),
            "SCRIPTS_CLIENT_SECRET": SCRIPTS_SECRET,
            "API_AUDIENCE": AUDIENCE,
        }
        self.process = subprocess.Popen(
            ["node", str(HERE / "provider.mjs")],
            cwd=HERE,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()  # "ready <issuer>", or nothing when it failed
        if not line.startswith("ready "):
            self.stop()
            raise RuntimeError(f"oidc-provider did not start: {line!r}")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{self.issuer}/.well-known/openid-configuration", timeout=2).raise_for_status()
                return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("oidc-provider does not answer")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process is not None and self.process.stdout is not None:
            self.process.stdout.close()
        self.process = None

    def environ(self, secret_file: Path) -> dict[str, str]:
        """The OIDC_* settings for a service signing in here (the secret written to ``secret_file``)."""
        secret_file.write_text(CONSOLE_SECRET + "\n")
        return {
            "OIDC_ISSUER": self.issuer,
            "OIDC_CLIENT_ID": CONSOLE_CLIENT,
            "OIDC_CLIENT_SECRET_FILE": str(secret_file),
            "OIDC_ROLE_MAP": ROLE_MAP,
            "OIDC_AUDIENCE": AUDIENCE,
        }

    def service_account_token(self) -> str:
        """An access token of the service account (client credentials): a JWT for AUDIENCE."""
        response = httpx.post(
            f"{self.issuer}/token",
            data={"grant_type": "client_credentials"},
            auth=(SCRIPTS_CLIENT, SCRIPTS_SECRET),
            timeout=10,
        )
        response.raise_for_status()
        token: str = response.json()["access_token"]
        return token


@pytest.fixture
def provider(node_modules: Path) -> Iterator[RunningProvider]:
    """The provider, for the management app under test (origin http://localhost)."""
    started = RunningProvider(
        redirect_uris=["http://localhost/console/auth/callback"],
        logout_uris=["http://localhost/console/sign-in?notice=signed-out"],
    )
    started.start()
    try:
        yield started
    finally:
        started.stop()
