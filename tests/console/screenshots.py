"""Screenshots of every console page, for the README: ``make screenshots`` (into docs/screenshots/).

``python -m tests.console.screenshots FOLDER`` starts a stack of its own exactly as ``make run``
does (an embedded PostgreSQL in a temporary folder, both services, Traefik), fills it with a few
codes and scans, and photographs each page with Debian's Chromium. The browser tests call
:func:`photograph` too, into a temporary folder, so a test run changes no tracked file.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
from playwright.sync_api import Browser, ViewportSize, sync_playwright

PAGES = {
    "codes": "/console/",
    "new": "/console/new",
    "code": "/console/codes/{code}",
    "scans": "/console/codes/{code}/scans",
}
AGENTS = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.0 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 15; Pixel 9) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0 Safari/537.36",
    "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
)


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


# The first code's saved design: what the design panel, its preview and the label sheet show.
DESIGN = {
    "fg": "#1e3a8a",
    "modules": "rounded",
    "finder": "rounded",
    "finder_fg": "#b91c1c",
    "gradient": "linear",
    "fg2": "#0f766e",
    "frame": "label",
    "frame_text": "SCAN ME",
}
PHONE: ViewportSize = {"width": 390, "height": 844}
PHONE_PAGES = ("codes", "code")  # the pages a phone is likeliest to open


def launch_arguments() -> list[str]:
    return ["--no-sandbox"] if os.geteuid() == 0 else []  # Chromium's sandbox refuses root


def fill(edge: str) -> str:
    """A few codes and scans through the edge; the id of the one the code pages show."""
    with httpx.Client(base_url=edge, timeout=30) as admin:
        rows = [
            {
                "target_url": "https://example.org/menu/spring",
                "title": "Spring menu",
                "tags": ["print", "menu"],
            },
            {"target_url": "https://example.org/wine", "title": "Wine list", "tags": ["print", "bar"]},
            {
                "target_url": "https://example.org/events/jazz",
                "title": "Jazz night poster",
                "tags": ["posters"],
            },
            {"target_url": "https://example.org/feedback", "title": "Table feedback", "tags": ["tables"]},
        ]
        made = admin.post("/api/v1/qr/bulk", json=rows)
        made.raise_for_status()
        code: str = made.json()["created"][0]["id"]
        admin.patch(f"/api/v1/qr/{code}", json={"target_url": "https://example.org/menu/summer"})
        admin.patch(f"/api/v1/qr/{code}", json={"design": DESIGN}).raise_for_status()
        for n in range(24):
            agent = AGENTS[n % len(AGENTS)]
            headers = {
                "User-Agent": agent,
                "Referer": "https://social.example/post",
                "X-Forwarded-For": f"198.51.100.{n}",
            }
            admin.get(f"/r/{code}", headers=headers, follow_redirects=False)
    return code


def photograph(browser: Browser, edge: str, code: str, folder: Path) -> list[Path]:
    """Each page at desktop width in the light scheme, the code page in the dark one too, its
    design panel alone, and the codes and the code page at a phone's width."""
    folder.mkdir(parents=True, exist_ok=True)
    taken = []
    context = browser.new_context(viewport=PHONE, color_scheme="light")
    try:
        page = context.new_page()
        for name in PHONE_PAGES:
            page.goto(edge + PAGES[name].format(code=code))
            page.wait_for_load_state("networkidle")
            target = folder / f"{name}-phone.png"
            page.screenshot(path=str(target), full_page=True)
            taken.append(target)
    finally:
        context.close()
    for scheme in ("light", "dark"):
        context = browser.new_context(viewport={"width": 1280, "height": 900}, color_scheme=scheme)
        try:
            page = context.new_page()
            for name, path in PAGES.items():
                if scheme == "dark" and name != "code":
                    continue
                page.goto(edge + path.format(code=code))
                page.wait_for_load_state("networkidle")
                target = folder / (f"{name}.png" if scheme == "light" else f"{name}-dark.png")
                page.screenshot(path=str(target), full_page=True)
                taken.append(target)
                if name == "code" and scheme == "light":
                    panel = folder / "design.png"
                    page.locator("section.design").screenshot(path=str(panel))
                    taken.append(panel)
        finally:
            context.close()
    return taken


def label_sheet(edge: str, folder: Path) -> Path | None:
    """The top of the first page of the codes' label sheet, rasterised (poppler's pdftoppm);
    ``None`` without it."""
    pdftoppm = shutil.which("pdftoppm")
    if pdftoppm is None:
        return None
    sheet = httpx.get(f"{edge}/api/v1/qr/export.pdf", params={"size_mm": "40"}, timeout=60)
    sheet.raise_for_status()
    with tempfile.TemporaryDirectory(prefix="qr-sheet-") as scratch:
        pdf = Path(scratch) / "sheet.pdf"
        pdf.write_bytes(sheet.content)
        # 110 dpi; the upper third of an A4 page (its first rows of labels).
        command = [pdftoppm, "-png", "-r", "110", "-f", "1", "-l", "1", "-W", "910", "-H", "430"]
        subprocess.run([*command, "-singlefile", str(pdf), str(folder / "labels")], check=True, timeout=60)
    return folder / "labels.png"


def main(argv: list[str]) -> int:
    from services.ops import embedded
    from services.ops.settings import StackSettings
    from services.ops.stack import Stack
    from tests.e2e.conftest import stack_environ

    if len(argv) != 1:
        print("usage: python -m tests.console.screenshots FOLDER", file=sys.stderr)  # noqa: T201
        return 2
    browser_path = chromium()
    if browser_path is None:
        print("screenshots: chromium is not installed (apt-get install chromium)", file=sys.stderr)  # noqa: T201
        return 1
    folder = Path(argv[0])
    with tempfile.TemporaryDirectory(prefix="qr-screenshots-") as scratch:
        var_dir = Path(scratch)
        server = embedded.start(var_dir / "pg")
        try:
            environ = stack_environ(var_dir / "stack", DATABASE_URL=server.dsn())
            stack = Stack(StackSettings.from_env(environ), environ=environ, out=io.StringIO())
            stack.start()
            try:
                edge = f"http://127.0.0.1:{stack.settings.http_port}"
                code = fill(edge)
                with sync_playwright() as playwright:
                    browser = playwright.chromium.launch(
                        executable_path=browser_path, args=launch_arguments()
                    )
                    try:
                        for path in photograph(browser, edge, code, folder):
                            print(path)  # noqa: T201
                        print(label_sheet(edge, folder) or "labels.png: pdftoppm missing (poppler-utils)")  # noqa: T201
                    finally:
                        browser.close()
            finally:
                stack.stop()
        finally:
            server.release()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
