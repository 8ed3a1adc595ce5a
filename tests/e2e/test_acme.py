"""The production certificate path for real: Traefik with the production static file and its ACME
resolver pointed at Pebble (Let's Encrypt's test CA, Debian's ``pebble``) obtains a certificate for
EDGE_ACME_DOMAINS, keeps it in its storage file, serves it on HTTPS, and after a restart serves it
again without asking the CA a second time; HTTP answers 301 to HTTPS except the ACME challenge."""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509

from services.ops import edge
from tests.conftest import free_port
from tests.e2e.conftest import RunningStack
from tests.e2e.test_edge import own_edge

PEBBLE = shutil.which("pebble") or ("/usr/bin/pebble" if Path("/usr/bin/pebble").exists() else None)
DOMAIN = "qr.example.test"

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(PEBBLE is None, reason="pebble not installed (apt-get install pebble)"),
]


@pytest.fixture
def pebble(tmp_path: Path) -> Iterator[tuple[str, str, Path, Path]]:
    """Pebble on free ports, validating nothing (PEBBLE_VA_ALWAYS_VALID: no DNS here), with every
    request answered (no deliberate nonce rejections). (directory URL, management URL, the CA of
    its HTTPS, its log)."""
    folder = tmp_path / "pebble"
    # Pebble's own HTTPS: the self-signed certificate make run makes for 127.0.0.1 (its own trust anchor).
    certificate, key = edge.ensure_certificate(folder)
    ca = certificate
    listen, management = free_port(), free_port()
    config = {
        "pebble": {
            "listenAddress": f"127.0.0.1:{listen}",
            "managementListenAddress": f"127.0.0.1:{management}",
            "certificate": str(certificate),
            "privateKey": str(key),
            "httpPort": free_port(),
            "tlsPort": free_port(),
            "ocspResponderURL": "",
            "externalAccountBindingRequired": False,
        }
    }
    (folder / "pebble.json").write_text(json.dumps(config))
    log = folder / "pebble.log"
    environ = {
        "PATH": "/usr/bin:/bin",
        "PEBBLE_VA_ALWAYS_VALID": "1",
        "PEBBLE_VA_NOSLEEP": "1",
        "PEBBLE_WFE_NONCEREJECT": "0",
    }
    assert PEBBLE is not None
    with log.open("wb") as out:
        process = subprocess.Popen(
            [PEBBLE, "-config", str(folder / "pebble.json")],
            env=environ,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    directory = f"https://127.0.0.1:{listen}/dir"
    try:
        verify = ssl.create_default_context(cafile=ca)
        deadline = time.monotonic() + 20
        while True:
            assert process.poll() is None, log.read_text()
            try:
                if httpx.get(directory, verify=verify, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"pebble did not answer:\n{log.read_text()}"
            time.sleep(0.1)
        yield directory, f"https://127.0.0.1:{management}", ca, log
    finally:
        process.terminate()
        process.wait(timeout=10)


def served_certificate(https: str, server_name: str) -> x509.Certificate:
    host, port = https.removeprefix("https://").rsplit(":", 1)
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection((host, int(port)), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=server_name) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def _names(certificate: x509.Certificate) -> list[str]:
    return certificate.extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    ).value.get_values_for_type(x509.DNSName)


def wait_for_issued(https: str, timeout: float = 60.0) -> x509.Certificate:
    deadline = time.monotonic() + timeout
    while True:
        certificate = served_certificate(https, DOMAIN)
        if DOMAIN in _names(certificate):
            return certificate
        assert time.monotonic() < deadline, f"still serving {certificate.subject.rfc4514_string()}"
        time.sleep(0.5)


def test_the_production_profile_gets_keeps_and_serves_a_certificate_from_an_acme_ca(
    tmp_path: Path, running_stack: RunningStack, pebble: tuple[str, str, Path, Path]
) -> None:
    directory, management, pebble_ca, pebble_log = pebble
    made = httpx.post(
        f"{running_stack.edge}/api/v1/qr", json={"target_url": "https://example.org/tls"}, timeout=10
    )
    code_id = made.json()["id"]
    storage = tmp_path / "acme" / "acme.json"
    storage.parent.mkdir()
    options = edge.EdgeOptions(
        https_only=True, grace_seconds=0, acme_storage=str(storage), acme_ca_server=directory
    )
    environ = {"EDGE_ACME_DOMAINS": DOMAIN, "LEGO_CA_CERTIFICATES": str(pebble_ca)}
    issuers = httpx.get(f"{management}/intermediates/0", verify=ssl.create_default_context(cafile=pebble_ca))
    issuer = x509.load_pem_x509_certificate(issuers.content)

    with own_edge(tmp_path / "first", running_stack, options, **environ) as own:
        issued = wait_for_issued(own.https)
        assert issued.issuer == issuer.subject  # Pebble's, not the configured fallback certificate
        with httpx.Client(timeout=10) as client:
            moved = client.get(f"{own.http}/r/{code_id}")
            assert moved.status_code == 301
            assert moved.headers["location"] == f"{own.https}/r/{code_id}"
            challenge = client.get(f"{own.http}/.well-known/acme-challenge/unknown-token")
            assert challenge.status_code != 301  # the CA's HTTP challenge is answered, not moved
        context = ssl.create_default_context(cafile=running_stack.certificate)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        with httpx.Client(base_url=own.https, verify=context, headers={"host": DOMAIN}, timeout=10) as tls:
            assert tls.get("/health").status_code == 200
    stored = json.loads(storage.read_text())
    certificates = stored["letsencrypt"]["Certificates"]
    assert [entry["domain"]["main"] for entry in certificates] == [DOMAIN]
    assert storage.stat().st_mode & 0o077 == 0  # the account key and certificate key: owner only
    asked = pebble_log.read_text().count("Issued certificate")
    assert asked == 1

    # A restart serves the stored certificate at once and does not ask the CA again.
    with own_edge(tmp_path / "second", running_stack, options, **environ) as again:
        served = wait_for_issued(again.https, timeout=10)
        assert served.serial_number == issued.serial_number
        time.sleep(2)
    assert pebble_log.read_text().count("Issued certificate") == asked
    assert os.path.exists(storage)
