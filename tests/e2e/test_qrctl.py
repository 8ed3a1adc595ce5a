"""qrctl as administrators run it: a subprocess against the real stack, through the edge."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pty
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import zxingcpp
from PIL import Image

from services.ops import embedded
from services.ops.settings import CHECKOUT
from tests.conftest import free_port
from tests.e2e.conftest import RunningStack, own_stack

pytestmark = pytest.mark.e2e

QRCTL = str(Path(sys.executable).parent / "qrctl")
REQUEST_ID = re.compile(r"request id [0-9a-f]{32}")


def qrctl(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, input_text: str | None = None
) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("QR_API")}
    environ["XDG_CONFIG_HOME"] = "/nonexistent"  # no config file unless a test makes one
    environ.update(env or {})
    return subprocess.run(
        [QRCTL, *args], env=environ, capture_output=True, text=True, timeout=120, cwd=cwd, input=input_text
    )


@pytest.fixture
def api(running_stack: RunningStack) -> dict[str, str]:
    return {"QR_API_URL": running_stack.edge}


def test_every_command_end_to_end(api: dict[str, str], running_stack: RunningStack, tmp_path: Path) -> None:
    created = qrctl("create", "https://example.org/menu", "--title", "Spring menu", "--tag", "print", env=api)
    assert created.returncode == 0, created.stderr
    fields = created.stdout.rstrip("\n").split("\t")
    code_id, short_url = fields[0], fields[1]
    assert short_url == f"{running_stack.settings.public_base_url}/r/{code_id}"
    assert created.stderr == ""

    as_json = qrctl("--json", "get", code_id, env=api)
    api_json = httpx.get(f"{running_stack.edge}/api/v1/qr/{code_id}").text
    assert as_json.stdout == api_json + "\n"  # the API's JSON, unchanged

    listed = qrctl("list", "--tag", "print", "--all", "--limit", "1", env=api)
    assert code_id in [line.split("\t")[0] for line in listed.stdout.splitlines()]
    listed_json = json.loads(qrctl("--json", "list", "--q", "spring menu", "--all", env=api).stdout)
    assert [item["id"] for item in listed_json["items"]] == [code_id]

    updated = qrctl("update", code_id, "--target", "https://example.org/winter", "--status", "307", env=api)
    assert updated.returncode == 0, updated.stderr
    assert "https://example.org/winter" in updated.stdout
    scanned = httpx.get(short_url, timeout=10)
    assert scanned.status_code == 307
    assert scanned.headers["location"] == "https://example.org/winter"

    png = tmp_path / "code.png"
    image = qrctl("image", code_id, "--size", "600", "--ecc", "q", "-o", str(png), env=api)
    assert image.returncode == 0, image.stderr
    assert [r.text for r in zxingcpp.read_barcodes(Image.open(png))] == [short_url]
    environ = {**os.environ, **api, "XDG_CONFIG_HOME": "/nonexistent"}
    piped = subprocess.run([QRCTL, "image", code_id, "-o", "-"], env=environ, capture_output=True, timeout=60)
    assert piped.returncode == 0
    assert [r.text for r in zxingcpp.read_barcodes(Image.open(io.BytesIO(piped.stdout)))] == [short_url]

    svg = tmp_path / "code.svg"
    styled = qrctl(
        "image", code_id, "--format", "svg", "--size-mm", "30", "--fg", "1a237e", "-o", str(svg), env=api
    )
    assert styled.returncode == 0, styled.stderr
    assert 'width="30mm"' in svg.read_text()
    assert 'fill="#1a237e"' in svg.read_text()
    faint = qrctl("image", code_id, "--fg", "dddddd", "-o", str(png), env=api)
    assert faint.returncode == 1
    assert "contrast" in faint.stderr

    logo = tmp_path / "brand.png"
    Image.new("RGB", (200, 200), (220, 40, 40)).save(logo)
    with_logo = qrctl("--json", "logo", code_id, str(logo), env=api)
    assert with_logo.returncode == 0, with_logo.stderr
    assert len(json.loads(with_logo.stdout)["logo_sha256"]) == 64
    shown = qrctl("get", code_id, env=api)  # the table shows which logo the code carries
    assert json.loads(with_logo.stdout)["logo_sha256"] in shown.stdout
    assert qrctl("image", code_id, "-o", str(png), env=api).returncode == 0
    assert [r.ec_level for r in zxingcpp.read_barcodes(Image.open(png))] == ["H"]
    assert qrctl("logo", code_id, "--remove", env=api).returncode == 0
    assert qrctl("logo", code_id, env=api).returncode == 2  # neither a file nor --remove
    assert qrctl("logo", code_id, str(tmp_path / "missing.png"), env=api).returncode == 2

    deadline = time.monotonic() + 10
    while True:  # scans reach the database within the writer's interval
        scans = json.loads(qrctl("--json", "scans", code_id, env=api).stdout)
        if scans["total"] == 1 or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    # httpx is a tool, not a person
    assert {k: scans[k] for k in ("code_id", "total", "people", "bots", "unique")} == {
        "code_id": code_id,
        "total": 1,
        "people": 0,
        "bots": 1,
        "unique": 0,
    }
    rows = [row.split("\t") for row in qrctl("scans", code_id, env=api).stdout.splitlines()]
    assert len(rows) == 30  # a row per day of the last 30, this one last
    assert rows[-1][0] == code_id
    assert rows[-1][2:] == ["1", "0", "1", "0"]
    assert qrctl("scans", code_id, "--tz", "Mars/Base", env=api).returncode == 1  # the API's 422

    history = qrctl("history", code_id, env=api).stdout.splitlines()
    assert [line.split("\t")[1] for line in history] == ["update", "update", "update", "create"]
    assert 'target_url="https://example.org/winter"' in history[2]

    deleted = qrctl("delete", code_id, env=api)
    assert deleted.returncode == 0
    assert deleted.stdout == ""
    assert deleted.stderr == f"deleted {code_id}\n"
    assert httpx.get(short_url, timeout=10).status_code == 404


def test_exit_codes(api: dict[str, str], tmp_path: Path) -> None:
    missing = qrctl("get", "nope123456", env=api)
    assert missing.returncode == 3
    assert REQUEST_ID.search(missing.stderr)
    assert missing.stdout == ""
    assert qrctl("delete", "nope123456", env=api).returncode == 3

    first = qrctl("create", "https://example.org/", "--slug", "qrctl-conflict", env=api)
    assert first.returncode == 0
    again = qrctl("create", "https://example.org/", "--slug", "qrctl-conflict", env=api)
    assert again.returncode == 5
    assert "taken" in again.stderr

    bad_field = qrctl("create", "javascript:alert(1)", env=api)
    assert bad_field.returncode == 1
    assert "target_url" in bad_field.stderr

    for args in (
        ["frobnicate"],
        ["get"],
        ["image", "abc", "--size", "99999", "-o", "x.png"],
        ["image", "abc"],
        ["update", "abc"],
        ["update", "abc", "--no-title", "--title", "x"],
        ["get", "../api/v1/qr"],
        ["get", "."],
        ["get", ".."],
        ["delete", "."],
        ["image", "..", "-o", "x.png"],
        ["scans", "a b"],
        ["--api-url", "http://admin:hunter2@127.0.0.1:1", "list"],
        ["--timeout", "0", "get", "abc"],
        ["list", "--limit", "0"],
    ):
        result = qrctl(*args, env=api)
        assert result.returncode == 2, (args, result.stderr)
        assert "Traceback" not in result.stderr
        assert "hunter2" not in result.stderr

    made = qrctl("create", "https://example.org/", env=api).stdout.split("\t")[0]
    unwritable = qrctl("image", made, "-o", str(tmp_path / "missing" / "x.png"), env=api)
    assert unwritable.returncode == 1
    assert "cannot write" in unwritable.stderr
    assert "Traceback" not in unwritable.stderr


def test_an_unreachable_service_says_where_it_tried(tmp_path: Path) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    result = qrctl("--api-url", closed, "list")
    assert result.returncode == 69
    assert closed in result.stderr

    # A server that accepts and never answers: the timeout, then a clear message.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        result = qrctl("--api-url", url, "--timeout", "0.5", "--retries", "0", "get", "abc")
        assert time.monotonic() - started < 10
    assert result.returncode == 69
    assert "within 0.5 s" in result.stderr


def test_where_the_api_url_comes_from(
    api: dict[str, str], running_stack: RunningStack, tmp_path: Path
) -> None:
    config = tmp_path / "qrctl" / "config.toml"
    config.parent.mkdir()
    config.write_text(f'api_url = "{running_stack.edge}"\n')
    closed = f"http://127.0.0.1:{free_port()}"
    home = {"XDG_CONFIG_HOME": str(tmp_path)}
    assert qrctl("list", "--limit", "1", env=home).returncode == 0  # the config file
    assert (
        qrctl("list", "--limit", "1", env={**home, "QR_API_URL": closed}).returncode == 69
    )  # env beats file
    assert (
        qrctl(
            "--api-url", running_stack.edge, "list", "--limit", "1", env={**home, "QR_API_URL": closed}
        ).returncode
        == 0
    )

    for content, message in (
        ("api_url = 5\n", "must be text"),
        ("api_url = [", "not valid TOML"),
        ("colour = 1\n", "unknown"),
    ):
        config.write_text(content)
        result = qrctl("list", env=home)
        assert result.returncode == 2
        assert message in result.stderr
    assert qrctl("--api-url", "ftp://x", "list").returncode == 2


def test_the_table_on_a_terminal(api: dict[str, str]) -> None:
    code_id = qrctl("create", "https://example.org/t", "--title", "Table test", env=api).stdout.split("\t")[0]
    primary, secondary = pty.openpty()
    environ = {**os.environ, **api, "XDG_CONFIG_HOME": "/nonexistent", "COLUMNS": "200"}
    process = subprocess.Popen(
        [QRCTL, "get", code_id], env=environ, stdout=secondary, stderr=subprocess.DEVNULL
    )
    os.close(secondary)
    chunks = []
    while True:
        try:
            chunk = os.read(primary, 65536)
        except OSError:  # EIO: the terminal's other side is closed, all was read
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(primary)
    process.wait(timeout=60)
    text = b"".join(chunks).decode().replace("\r\n", "\n")
    assert process.returncode == 0
    assert re.search(rf"^id\s+{code_id}\s*$", text, re.MULTILINE)
    assert re.search(r"^title\s+Table test\s*$", text, re.MULTILINE)
    assert re.search(r"^enabled\s+yes\s*$", text, re.MULTILINE)


def test_the_readme_scripting_section_runs(api: dict[str, str], tmp_path: Path) -> None:
    readme = (CHECKOUT / "README.md").read_text()
    section = readme.split("## Scripting: `qrctl`", 1)[1]
    script = re.search(r"```sh\n(.*?)```", section, re.DOTALL).group(1)  # type: ignore[union-attr]
    rows = [f"readme-{n:03d},https://example.org/print/{n},Poster {n}" for n in range(12)]
    (tmp_path / "codes.csv").write_text("slug,target_url,title\n" + "\n".join(rows) + "\n")
    environ = {**api, "PATH": f"{Path(QRCTL).parent}:{os.environ['PATH']}"}

    def run_it() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["sh", "-c", script],  # as a user would paste it: no bash, no pipefail
            cwd=tmp_path,
            env={**os.environ, **environ, "XDG_CONFIG_HOME": "/nonexistent"},
            capture_output=True,
            text=True,
            timeout=300,
        )

    for _ in range(2):  # a second run finds the codes made by the first and completes as well
        result = run_it()
        assert result.returncode == 0, result.stderr
        ids = (tmp_path / "ids.txt").read_text().split()
        assert ids == [f"readme-{n:03d}" for n in range(12)]
        assert sorted(p.name for p in (tmp_path / "png").iterdir()) == sorted(f"{i}.png" for i in ids)
        assert result.stdout.split("\t")[0] == "readme-000"  # the scans line

    # A failure stops it with the failure's exit code, not an empty list and a zero.
    (tmp_path / "codes.csv").write_text("slug,target_url,title\nreadme-bad,javascript:alert(1),Bad\n")
    result = run_it()
    assert result.returncode == 1
    assert "target_url" in result.stderr


@pytest.fixture(scope="module")
def token_stack(
    pg_server: embedded.EmbeddedServer, template_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path]]:
    """A second stack, with ADMIN_TOKENS_FILE set."""
    folder = tmp_path_factory.mktemp("token-stack")
    tokens = folder / "tokens"
    tokens.write_text(f"ci-bot:{hashlib.sha256(b'the-right-token').hexdigest()}\n")
    with own_stack(pg_server, folder / "var", ADMIN_TOKENS_FILE=str(tokens)) as (stack, _):
        yield f"http://127.0.0.1:{stack.settings.http_port}", folder


def test_tokens_come_from_files_and_a_refusal_is_4(token_stack: tuple[str, Path]) -> None:
    edge, folder = token_stack
    right, wrong = folder / "right", folder / "wrong"
    right.write_text("the-right-token\n")
    wrong.write_text("not-the-token\n")
    api = {"QR_API_URL": edge}
    refused = qrctl("list", env=api)
    assert refused.returncode == 4
    assert "bearer token" in refused.stderr
    assert qrctl("--token-file", str(wrong), "list", env=api).returncode == 4
    created = qrctl("--token-file", str(right), "create", "https://example.org/", env=api)
    assert created.returncode == 0, created.stderr
    code_id = created.stdout.split("\t")[0]
    assert qrctl("get", code_id, env={**api, "QR_API_TOKEN_FILE": str(right)}).returncode == 0
    history = qrctl("--json", "--token-file", str(right), "history", code_id, env=api)
    assert json.loads(history.stdout)["items"][0]["token_name"] == "ci-bot"
    for result in (refused, created, history):
        assert "the-right-token" not in result.stdout + result.stderr
    missing = qrctl("--token-file", str(folder / "absent"), "list", env=api)
    assert missing.returncode == 2
    assert "cannot read the token file" in missing.stderr


def test_bulk_prints_the_codes_or_every_bad_row(api: dict[str, str], tmp_path: Path) -> None:
    good = tmp_path / "tables.csv"
    good.write_text(
        "target_url,title,tags\nhttps://example.org/t1,Table 1,qrctl-bulk\nhttps://example.org/t2,,\n"
    )
    made = qrctl("bulk", str(good), "--idempotency-key", "qrctl-bulk-1", env=api)
    assert made.returncode == 0, made.stderr
    rows = [line.split("\t") for line in made.stdout.splitlines()]
    assert [row[2] for row in rows] == ["https://example.org/t1", "https://example.org/t2"]
    again = qrctl("bulk", str(good), "--idempotency-key", "qrctl-bulk-1", env=api)
    assert again.stdout == made.stdout  # the first answer, not two more codes

    bad = tmp_path / "bad.csv"
    bad.write_text(
        "target_url,redirect_status\nhttps://example.org/ok,\njavascript:alert(1),\nhttps://example.org/,303\n"
    )
    refused = qrctl("bulk", str(bad), env=api)
    assert refused.returncode == 1
    assert refused.stdout == ""
    assert refused.stderr.splitlines()[0].startswith("row 2: target_url: ")
    assert refused.stderr.splitlines()[1].startswith("row 3: redirect_status: ")
    partial = qrctl("bulk", str(bad), "--partial", env=api)
    assert partial.returncode == 1
    assert partial.stdout.count("\n") == 1  # the good row was created
    assert "created 1; 2 rows refused" in partial.stderr
    header = qrctl("bulk", "-", env=api, input_text="title\nx\n")
    assert header.returncode == 1
    assert "target_url" in header.stderr


def test_export_writes_the_file(api: dict[str, str], tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    source.write_text(
        "target_url,title,tags\n"
        + "".join(f"https://example.org/e{n},=E{n},qrctl-export\n" for n in range(30))
    )
    assert qrctl("bulk", str(source), env=api).returncode == 0
    target = tmp_path / "out.csv"
    exported = qrctl("export", "--tag", "qrctl-export", "-o", str(target), env=api)
    assert exported.returncode == 0, exported.stderr
    lines = target.read_text().splitlines()
    assert len(lines) == 31
    assert lines[0].startswith("id,short_url,target_url,title,tags")
    assert ",'=E0,qrctl-export," in lines[1]  # formula-safe
    archive = tmp_path / "out.zip"
    assert (
        qrctl("export", "--format", "zip", "--tag", "qrctl-export", "-o", str(archive), env=api).returncode
        == 0
    )
    import zipfile

    assert len(zipfile.ZipFile(archive).namelist()) == 31  # thirty images and the manifest
    sheets = tmp_path / "out.pdf"
    assert (
        qrctl("export", "--format", "pdf", "--tag", "qrctl-export", "-o", str(sheets), env=api).returncode
        == 0
    )
    assert sheets.read_bytes().startswith(b"%PDF-")
    unwritable = qrctl("export", "-o", str(tmp_path / "missing" / "x.csv"), env=api)
    assert unwritable.returncode == 1
    assert "cannot write" in unwritable.stderr


def test_every_command_waits_out_the_edges_rate_limit(running_stack: RunningStack, tmp_path: Path) -> None:
    from tests.e2e.test_edge import own_edge, wait_routed

    with own_edge(tmp_path, running_stack, ADMIN_RATE_LIMIT_AVERAGE="2", ADMIN_RATE_LIMIT_BURST="2") as own:
        wait_routed(f"{own.http}/health", 200)
        env = {"QR_API_URL": own.http}
        started = time.monotonic()
        tag = f"limited-{uuid.uuid4().hex[:8]}"
        results = [
            qrctl("create", f"https://example.org/limited/{n}", "--tag", tag, env=env) for n in range(8)
        ]
        assert [r.returncode for r in results] == [0] * 8, [r.stderr for r in results]
        assert time.monotonic() - started >= 1.5  # eight at two a second: some waited
        # Pages of two, each a request: the pages wait their turn too (only this test's codes: the
        # stack's others would only make the wait longer).
        listed = qrctl("list", "--tag", tag, "--limit", "2", "--all", env=env)
        assert listed.returncode == 0, listed.stderr
        assert len(listed.stdout.splitlines()) == 8
