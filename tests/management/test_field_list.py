"""A code's field list, declared once: the code's models (schemas/: the fields it is created with,
changed with and answered with) and its table's column. Everything else that names the fields reads
them: the console's form, the bulk upload's CSV columns, the columns read, copied and exported, the
history, qrctl's output.

The last test proves it on a copy of the project: a field added to the models, the table and one
migration shows in the console's form, the CSV export, the history and qrctl, with no other change."""

from __future__ import annotations

import difflib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx

from services.management import bulk, codes, exports
from services.management.console import forms
from services.management.schemas import NewQRCode, QRCode, QRCodeChanges, kind_of
from services.ops import schema
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]


def test_everything_that_names_a_codes_fields_reads_the_models() -> None:
    created = tuple(NewQRCode.model_fields)
    changed = tuple(QRCodeChanges.model_fields)
    # Redirect rules (JSON) and the design have editors of their own, beside the form.
    rules = {name for name, info in NewQRCode.model_fields.items() if kind_of(info) == "json"}
    assert rules == {"rules", "split"}
    panels = rules | {"design"}  # templates/_rules.html, templates/_design.html
    assert {field.name for field in forms.CODE_FORM} == set(created) - panels
    assert {field.name for field in forms.CODE_FORM if not field.new_only} == set(changed) - panels
    assert created == bulk.COLUMNS
    assert ("id", "short_url", *changed, "kind", "dynamic", "scan_count", "created_at", "updated_at") == (
        exports.CODE_COLUMNS
    )
    assert ("id", "short_url", *changed, "kind", "dynamic", "created_at", "updated_at") == codes.COPY_COLUMNS
    assert changed == codes.WRITABLE
    worked_out = ("target_host_ascii", "static", "scan_count", "state", "warnings")
    answered = [name for name in QRCode.model_fields if name not in worked_out]
    assert [column.name for column in codes._RESOURCE_COLUMNS] == answered


def test_the_readme_names_the_bulk_columns_in_their_order() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Bulk", 1)[1].split("```", 1)[0]
    named = [name for name in re.findall(r"`([a-z_]+)`", section) if name in bulk.COLUMNS]
    assert list(dict.fromkeys(named)) == list(bulk.COLUMNS)


# -- a throwaway field, in a copy of the project ------------------------------------------------------

FIELD = "campaign"
ADDED = {  # file -> (the line after which the field goes, the line added)
    "services/management/schemas/answers.py": [
        ("    forward_query: bool\n", f"    {FIELD}: str | None\n"),
    ],
    "services/management/schemas/bodies.py": [
        ("    forward_query: bool = _NOT_SENT\n", f"    {FIELD}: str | None = None\n"),
        (
            '        default=False, description="Append the scan\'s query string to the target."\n    )\n',
            f"    {FIELD}: str | None = None\n",
        ),
    ],
    "services/management/models.py": [
        (
            '    Column("forward_query", Boolean, nullable=False, server_default=false()),\n',
            f'    Column("{FIELD}", Text),\n',
        ),
    ],
}
MIGRATION = '''"""A throwaway field of a code (a test's)."""

import sqlalchemy as sa
from alembic import op

revision = "9999"
down_revision = "{head}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("qr_codes", sa.Column("{field}", sa.Text()))


def downgrade() -> None:
    op.drop_column("qr_codes", "{field}")
'''


def _copy_with_the_field(copy: Path) -> str:
    """The project copied into ``copy``, the field added; the unified diff that took."""
    for part in ("services", "shared", "migrations"):
        shutil.copytree(ROOT / part, copy / part, ignore=shutil.ignore_patterns("__pycache__"))
    diff = []
    for name, additions in ADDED.items():
        before = (copy / name).read_text()
        after = before
        for anchor, line in additions:
            assert after.count(anchor) == 1, (name, anchor)
            after = after.replace(anchor, anchor + line)
        (copy / name).write_text(after)
        diff += difflib.unified_diff(
            before.splitlines(keepends=True), after.splitlines(keepends=True), f"a/{name}", f"b/{name}"
        )
    migration = f"migrations/versions/2099_01_01_9999_{FIELD}.py"
    text = MIGRATION.format(head=schema.head_revision(), field=FIELD)
    (copy / migration).write_text(text)
    diff += difflib.unified_diff([], text.splitlines(keepends=True), "/dev/null", f"b/{migration}")
    return "".join(diff)


def _run(copy: Path, code: str, *args: str, env: dict[str, str] | None = None) -> str:
    """Python code run from the copy (its ``services`` first on the path)."""
    result = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=copy,
        env={**os.environ, "PYTHONPATH": str(copy), "XDG_CONFIG_HOME": "/nonexistent", **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_a_field_added_to_the_models_shows_in_the_form_the_export_the_history_and_qrctl(
    tmp_path: Path, database_url: str
) -> None:
    copy = tmp_path / "project"
    diff = _copy_with_the_field(copy)
    (tmp_path / "field.diff").write_text(diff)  # what a new field takes, to read
    assert sum(line.startswith("+") and not line.startswith("+++") for line in diff.splitlines()) == 4 + len(
        MIGRATION.splitlines()
    )
    _run(copy, "import sys; from services.ops import schema; schema.upgrade(sys.argv[1])", database_url)

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    environ = {
        **os.environ,
        "PYTHONPATH": str(copy),
        "DATABASE_URL": database_url,
        "MANAGEMENT_PORT": str(port),
        "QR_DATA_DIR": str(tmp_path / "images"),
        "PUBLIC_BASE_URL": "http://qr.test:8080",
        "BACKUP_DIR": str(tmp_path / "backups"),
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "services.management"],
        cwd=copy,
        env=environ,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        with httpx.Client(base_url=base, timeout=30) as client:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if client.get("/livez").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert server.poll() is None, server.stderr.read().decode() if server.stderr else ""
                assert time.monotonic() < deadline, "the copy's service did not start"
                time.sleep(0.2)

            # The console's form has the field, and creates a code with it.
            page = client.get("/console/new")
            assert f'name="{FIELD}"' in page.text
            csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
            assert csrf
            made = client.post(
                "/console/new",
                data={
                    "csrf": csrf[1],
                    "target_url": "https://example.org/",
                    "slug": "spring",
                    FIELD: "tents",
                },
                headers={"origin": base},
            )
            assert made.status_code == 303, made.text[:2000]
            edit = client.get("/console/codes/spring").text
            assert re.search(rf'name="{FIELD}" type="text" value="tents"', edit)

            # The API answers it; the CSV export and the history have it.
            assert client.get("/api/v1/qr/spring").json()[FIELD] == "tents"
            exported = client.get("/api/v1/qr/export.csv").text.splitlines()
            header = exported[0].split(",")
            assert FIELD in header
            assert exported[1].split(",")[header.index(FIELD)] == "tents"
            (created,) = client.get("/api/v1/qr/spring/history").json()["items"]
            assert created["changes"][FIELD] == {"old": None, "new": "tents"}

        # qrctl: every field of a code, and a CSV with the field's column.
        qrctl = "from services.qrctl.cli import main; main()"
        shown = _run(copy, qrctl, "--api-url", base, "get", "spring")
        assert "tents" in shown.rstrip("\n").split("\t")
        table = tmp_path / "codes.csv"
        table.write_text(f"target_url,slug,{FIELD}\nhttps://example.org/a,autumn,leaves\n")
        _run(copy, qrctl, "--api-url", base, "bulk", str(table))
        assert json.loads(_run(copy, qrctl, "--api-url", base, "--json", "get", "autumn"))[FIELD] == "leaves"
    finally:
        server.terminate()
        server.wait(timeout=30)
        if server.stderr:
            server.stderr.close()
