"""The README states the redirect service's limits as the code declares them."""

from __future__ import annotations

from pathlib import Path

from services.ops.processes import REDIRECT_MAX_HEADER_BYTES, granian_command
from services.redirect import scans

README = " ".join((Path(__file__).parents[2] / "README.md").read_text().split())  # lines joined


def test_the_readme_states_the_header_limits() -> None:
    kib = REDIRECT_MAX_HEADER_BYTES // 1024
    assert f"A request's line and headers may take {kib} KiB at the redirect service" in README
    assert f"--http1-buffer-size={REDIRECT_MAX_HEADER_BYTES}" in granian_command("127.0.0.1", 8001)
    kept = (
        f"{scans.MAX_USER_AGENT} bytes of the user agent, {scans.MAX_REFERRER:,} of the referrer, "
        f"the last {scans.MAX_FORWARDED_FOR} of `X-Forwarded-For`"
    )
    assert kept in README
    assert "up to `SCAN_BUFFER_MAX` per process (and as many KiB of their headers)" in README
    assert scans.BUFFERED_BYTES_PER_SCAN == 1024  # "as many KiB"
