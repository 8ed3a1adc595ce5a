"""The browser code the console serves is what VENDORED.md says: the npm packages' files at their
pinned versions, unchanged, with their licences; and the pages load exactly those files."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

STATIC = Path(__file__).resolve().parents[2] / "services" / "management" / "console" / "static"
VENDOR = STATIC / "vendor"
TEMPLATES = STATIC.parent / "templates"


def listed() -> dict[str, tuple[str, str]]:
    """file -> (version, sha256) from VENDORED.md's table."""
    rows = re.findall(
        r"^\| (\S+) \| [^|]+ \| ([0-9.]+) \| [^|]+ \| ([0-9a-f]{64}) \|$",
        (VENDOR / "VENDORED.md").read_text(),
        re.M,
    )
    return {name: (version, digest) for name, version, digest in rows}


def test_every_vendored_file_is_listed_with_its_digest() -> None:
    table = listed()
    assert set(table) == {p.name for p in VENDOR.iterdir() if p.suffix in (".js", ".css")}
    for name, (version, digest) in table.items():
        data = (VENDOR / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == digest, name
        assert version in name, name
    assert 'version:"2.0.11"' in (VENDOR / "htmx-2.0.11.min.js").read_text()
    for licence in ("htmx-LICENSE.txt", "uPlot-LICENSE.txt"):
        assert (VENDOR / licence).read_text().strip(), licence


def test_the_pages_load_the_vendored_files_and_nothing_else() -> None:
    loaded = set()
    for template in TEMPLATES.glob("*.html"):
        for found in re.findall(r'(?:src|href)="(/console/static/[^"]+)"', template.read_text()):
            loaded.add(found)
    for path in loaded:
        assert (STATIC / path.removeprefix("/console/static/")).is_file(), path
    assert {f"/console/static/vendor/{name}" for name in listed()} <= loaded


def test_the_axe_core_the_tests_inject_is_its_release() -> None:
    axe = Path(__file__).with_name("vendor") / "axe-4.14.1.min.js"
    assert axe.read_text().startswith("/*! axe v4.14.1")
    assert (axe.parent / "axe-core-LICENSE.txt").read_text().startswith("Mozilla Public License")
