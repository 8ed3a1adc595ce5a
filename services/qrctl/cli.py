"""The qrctl commands: one per management API operation, so that later endpoints slot in as new
commands without changing what scripts already call."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click

from services.management import limits
from services.qrctl import output
from services.qrctl.config import ConfigProblem, environment, load
from shared.ids import SLUG_MAX, SLUG_MIN, is_well_formed

F = TypeVar("F", bound=Callable[..., Any])

# What a list shows of each code, one line per code (`qrctl get` shows every field the API sends).
CODE_COLUMNS = ("id", "short_url", "target_url", "enabled", "scan_count", "title")
HISTORY_COLUMNS = ("changed_at", "action", "fields", "client_address", "token_name", "request_id")
SERIES_COLUMNS = ("code_id", "start", "total", "people", "bots", "unique")
# Options of `create` and `update` that are not API fields but say how to change one.
_CLEARING_FLAGS = ("no_title", "no_expiry", "no_fallback", "clear_tags")


class Settings:
    def __init__(
        self, api_url: str | None, token_file: str | None, timeout: float | None, retries: int, as_json: bool
    ):
        self.api_url, self.token_file, self.timeout, self.retries = api_url, token_file, timeout, retries
        self.as_json = as_json


@contextmanager
def api(ctx: click.Context) -> Iterator[Any]:
    """The API client for this command; a failure becomes its message on stderr and its exit code."""
    from services.qrctl.client import Api, Failure  # httpx is imported only when a request is made

    settings: Settings = ctx.obj
    try:
        config = load(
            environment(),
            api_url=settings.api_url,
            token_file=settings.token_file,
            timeout=settings.timeout,
            retries=settings.retries,
        )
    except ConfigProblem as exc:
        raise click.UsageError(str(exc)) from None
    client = Api(config)
    try:
        yield client
    except Failure as exc:
        output.message(f"qrctl: {exc}")
        ctx.exit(exc.exit_code)
    finally:
        client.close()


def _print_record(ctx: click.Context, record: dict[str, Any], text: str) -> None:
    """The API's JSON unchanged with --json, else every field of the record, in the API's order."""
    if ctx.obj.as_json:
        click.echo(text)
    else:
        output.one(record, tuple(record))


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--api-url",
    metavar="URL",
    help="The management API (default: $QR_API_URL, the config file, http://127.0.0.1:8080).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON unchanged instead of a table.")
@click.option(
    "--token-file", metavar="FILE", help="A file holding a bearer token (default: $QR_API_TOKEN_FILE)."
)
@click.option(
    "--timeout", type=click.FloatRange(0, 600, min_open=True), help="Seconds to wait for an answer (10)."
)
@click.option(
    "--retries",
    type=click.IntRange(0, 10),
    default=2,
    show_default=True,
    help="Retries of reads (never writes).",
)
@click.version_option(package_name="qr-service", prog_name="qrctl")
@click.pass_context
def main(
    ctx: click.Context,
    api_url: str | None,
    as_json: bool,
    token_file: str | None,
    timeout: float | None,
    retries: int,
) -> None:
    """Manage dynamic QR codes through the management API.

    Output is a table on a terminal and tab-separated rows (no header) in a pipe, so that
    `cut -f1` gives the ids; --json prints the API's JSON. Messages go to stderr.

    \b
    Exit codes: 0 ok, 1 other error, 2 usage, 3 not found, 4 refused (401/403),
                5 conflict, 69 service unavailable or unreachable.

    \b
    Examples:
      qrctl create https://example.org/menu --title Menu --tag print
      qrctl list --tag print --all
      qrctl image kx7m2qpz4a --size 600 -o menu.png
      qrctl --api-url https://qr.example.org --token-file ~/.qr-token get kx7m2qpz4a
    """
    ctx.obj = Settings(api_url, token_file, timeout, retries, as_json)


def _code_options(creating: bool) -> Callable[[F], F]:
    def decorate(command: F) -> F:
        options = [
            click.option("--title", help="A title for people (not shown to scanners)."),
            click.option("--tag", "tags", multiple=True, help="A tag; repeat for several."),
            click.option(
                "--status",
                "redirect_status",
                type=click.Choice([str(status) for status in limits.REDIRECT_STATUSES]),
                help=f"The redirect status ({limits.DEFAULT_REDIRECT_STATUS} unless set; 301/308 are "
                "cached by browsers).",
            ),
            click.option(
                "--expires",
                "expires_at",
                metavar="TIME",
                help="When the code stops redirecting, ISO 8601 with a zone (2027-06-01T18:00:00Z).",
            ),
            click.option(
                "--fallback",
                "fallback_url",
                metavar="URL",
                help="Where a disabled or expired code sends people instead of a 410 page.",
            ),
            click.option(
                "--forward-query/--no-forward-query",
                default=None,
                help="Append the scan's query string (UTM tags) to the target.",
            ),
        ]
        if not creating:
            options += [
                click.option("--target", "target_url", metavar="URL", help="The new destination."),
                click.option("--clear-tags", is_flag=True, help="Remove every tag."),
                click.option("--no-title", is_flag=True, help="Remove the title."),
                click.option("--no-expiry", is_flag=True, help="Never expire."),
                click.option(
                    "--no-fallback", is_flag=True, help="Answer 410 again when disabled or expired."
                ),
            ]
        options.append(
            click.option("--enable/--disable", "enabled", default=None, help="Switch the code on or off.")
        )
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


@main.command()
@click.argument("target_url")
@click.option(
    "--slug",
    help=f"Your own id ({SLUG_MIN}-{SLUG_MAX} of A-Z a-z 0-9 _ -, the same whatever its case) instead "
    "of a random one.",
)
@_code_options(creating=True)
@click.pass_context
def create(
    ctx: click.Context, /, target_url: str, slug: str | None, tags: tuple[str, ...], **fields: Any
) -> None:
    """Create a code pointing at TARGET_URL; print it.

    \b
    Example:
      qrctl create https://example.org/menu --slug spring-menu --title "Spring menu" --tag print
      id=$(qrctl create https://example.org/menu | cut -f1)
    """
    body: dict[str, Any] = {"target_url": target_url, **_fields(fields)}
    if slug is not None:
        body["slug"] = slug
    if tags:
        body["tags"] = list(tags)
    with api(ctx) as client:
        code, text = client.json("POST", "/api/v1/qr", json=body)
        _print_record(ctx, code, text)


@main.command("list")
@click.option("--q", "query", metavar="TEXT", help="Search id, title and target.")
@click.option("--tag", help="Only codes with this tag.")
@click.option("--enabled/--disabled", "enabled", default=None, help="Only codes switched on (or off).")
@click.option(
    "--limit", type=click.IntRange(1, limits.MAX_PAGE), default=100, show_default=True, help="Codes per page."
)
@click.option("--all", "every_page", is_flag=True, help="Follow the pages to the end.")
@click.pass_context
def list_codes(
    ctx: click.Context, query: str | None, tag: str | None, enabled: bool | None, limit: int, every_page: bool
) -> None:
    """List codes, oldest first (one page, or --all of them).

    \b
    Example:
      qrctl list --tag print --all | cut -f1,2
    """
    params: dict[str, Any] = {"limit": limit}
    if query is not None:
        params["q"] = query
    if tag is not None:
        params["tag"] = tag
    if enabled is not None:
        params["enabled"] = "true" if enabled else "false"
    items: list[dict[str, Any]] = []
    with api(ctx) as client:
        while True:
            page, text = client.json("GET", "/api/v1/qr", params=params)
            if not ctx.obj.as_json:
                output.table(page["items"], CODE_COLUMNS)  # page by page: a long walk shows progress
            items += page["items"]
            if not every_page or page["next_cursor"] is None:
                break
            params["cursor"] = page["next_cursor"]
    if ctx.obj.as_json:
        from services.qrctl.client import dumps

        click.echo(text if not every_page else dumps({"items": items, "next_cursor": None}))


@main.command()
@click.argument("code_id")
@click.pass_context
def get(ctx: click.Context, code_id: str) -> None:
    """Show one code.

    \b
    Example:
      qrctl get spring-menu
    """
    with api(ctx) as client:
        code, text = client.json("GET", f"/api/v1/qr/{_path(code_id)}")
        _print_record(ctx, code, text)


@main.command()
@click.argument("code_id")
@_code_options(creating=False)
@click.pass_context
def update(ctx: click.Context, /, code_id: str, tags: tuple[str, ...], **fields: Any) -> None:
    """Change a code; every redirect follows within a second. The printed image stays valid.

    \b
    Example:
      qrctl update spring-menu --target https://example.org/summer-menu
      qrctl update spring-menu --disable --fallback https://example.org/closed
    """
    changes = _fields(fields)
    for flag, field in (("no_title", "title"), ("no_expiry", "expires_at"), ("no_fallback", "fallback_url")):
        if fields.get(flag):
            if field in changes:
                raise click.UsageError(f"--{flag.replace('_', '-')} and a new {field} contradict each other")
            changes[field] = None
    if fields.get("clear_tags"):
        if tags:
            raise click.UsageError("--clear-tags and --tag contradict each other")
        changes["tags"] = []
    elif tags:
        changes["tags"] = list(tags)
    if not changes:
        raise click.UsageError("nothing to change: give at least one option (see qrctl update --help)")
    with api(ctx) as client:
        code, text = client.json("PATCH", f"/api/v1/qr/{_path(code_id)}", json=changes)
        _print_record(ctx, code, text)


@main.command()
@click.argument("code_id")
@click.pass_context
def delete(ctx: click.Context, code_id: str) -> None:
    """Delete a code: its short link answers 404 from now on and its id is never handed out again.
    Its scans and history stay.

    \b
    Example:
      qrctl delete spring-menu
    """
    with api(ctx) as client:
        client.request("DELETE", f"/api/v1/qr/{_path(code_id)}")
    output.message(f"deleted {code_id}")


@main.command()
@click.argument("code_id")
@click.option("--format", "image_format", type=click.Choice(["png", "svg"]), default="png", show_default=True)
@click.option(
    "--size",
    type=click.IntRange(limits.MIN_SIZE, limits.MAX_SIZE),
    help=f"Pixels ({limits.DEFAULT_SIZE}); a PNG has whole pixels per module.",
)
@click.option(
    "--size-mm",
    type=click.FloatRange(limits.MIN_SIZE_MM, limits.MAX_SIZE_MM),
    help=f"Printed size in mm, instead of --size (a PNG up to {limits.MAX_PNG_SIZE_MM:g}).",
)
@click.option(
    "--dpi",
    type=click.IntRange(limits.MIN_DPI, limits.MAX_DPI),
    help=f"Recorded in the PNG; with --size-mm, {limits.DEFAULT_PRINT_DPI}.",
)
@click.option(
    "--border",
    type=click.IntRange(0, limits.MAX_BORDER),
    help=f"Quiet-zone modules ({limits.DEFAULT_BORDER}).",
)
@click.option(
    "--ecc",
    type=click.Choice(limits.ECC_LEVELS, case_sensitive=False),
    help=f"Error correction ({limits.DEFAULT_ECC}).",
)
@click.option("--fg", metavar="HEX", help=f"Module colour ({limits.DEFAULT_FG[1:]}); darker than --bg.")
@click.option("--bg", metavar="HEX", help=f"Ground colour ({limits.DEFAULT_BG[1:]}).")
@click.option(
    "-o", "--output", "target", required=True, metavar="FILE", help="Where to write it; - for stdout."
)
@click.pass_context
def image(ctx: click.Context, /, code_id: str, image_format: str, target: str, **options: Any) -> None:
    """Download a code's image; it encodes the short link and is checked by decoding before it is served.

    \b
    Examples:
      qrctl image spring-menu --size 1200 --ecc Q -o spring-menu.png
      qrctl image spring-menu --format svg --size-mm 40 --fg 1a237e -o spring-menu.svg
    """
    params = {name: value for name, value in options.items() if value is not None}
    if "size_mm" in params:
        params["size_mm"] = f"{params['size_mm']:g}"
    if target == "-" and sys.stdout.isatty():
        raise click.UsageError("refusing to write an image to a terminal; use -o FILE or a pipe")
    with api(ctx) as client:
        response = client.request("GET", f"/api/v1/qr/{_path(code_id)}/image.{image_format}", params=params)
    if target == "-":
        sys.stdout.buffer.write(response.content)
        sys.stdout.buffer.flush()
    else:
        try:
            Path(target).write_bytes(response.content)
        except OSError as exc:
            output.message(f"qrctl: cannot write {target}: {exc.strerror or exc}")
            ctx.exit(1)
        output.message(f"wrote {target} ({len(response.content)} bytes)")


@main.command()
@click.argument("code_id")
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--remove", is_flag=True, help="Take the logo away.")
@click.pass_context
def logo(ctx: click.Context, code_id: str, file: Path | None, remove: bool) -> None:
    """Put a logo (PNG or JPEG) in the middle of a code's images, or take it away with --remove.

    \b
    Examples:
      qrctl logo spring-menu brand.png
      qrctl logo spring-menu --remove
    """
    if remove == (file is not None):
        raise click.UsageError("give a FILE, or --remove")
    with api(ctx) as client:
        if file is None:
            client.request("DELETE", f"/api/v1/qr/{_path(code_id)}/logo")
            output.message(f"removed the logo of {code_id}")
            return
        try:
            body = file.read_bytes()
        except OSError as exc:
            raise click.BadParameter(
                f"cannot read {file}: {exc.strerror or exc}", param_hint="FILE"
            ) from None
        content_type = "image/jpeg" if body.startswith(b"\xff\xd8\xff") else "image/png"
        code, text = client.json(
            "PUT", f"/api/v1/qr/{_path(code_id)}/logo", content=body, headers={"Content-Type": content_type}
        )
        _print_record(ctx, code, text)


@main.command()
@click.argument("code_id")
@click.option(
    "--from", "start", metavar="DAY|TIME", help="Start: 2026-10-01, or a time with its offset (30 days ago)."
)
@click.option("--to", "end", metavar="DAY|TIME", help="End, exclusive (the end of the current bucket).")
@click.option(
    "--interval", type=click.Choice(["hour", "day", "week", "month"]), default="day", show_default=True
)
@click.option("--tz", metavar="ZONE", default="UTC", show_default=True, help="Time zone of the buckets.")
@click.pass_context
def scans(
    ctx: click.Context, code_id: str, start: str | None, end: str | None, interval: str, tz: str
) -> None:
    """Show a code's scans over time: people, bots and unique visitors (deleted codes too).

    On a terminal: the totals, a line of the series at a glance, the series and the top lists. In a
    pipe: one tab-separated row per bucket (code, start, total, people, bots, unique). --json: the
    API's JSON.

    \b
    Examples:
      qrctl scans spring-menu --from 2026-10-01 --to 2026-11-01 --tz Europe/Paris
      qrctl scans spring-menu --interval hour --from 2026-11-24 | cut -f2,3
    """
    params = {"interval": interval, "tz": tz}
    if start is not None:
        params["from"] = start
    if end is not None:
        params["to"] = end
    with api(ctx) as client:
        report, text = client.json("GET", f"/api/v1/qr/{_path(code_id)}/scans", params=params)
    if ctx.obj.as_json:
        click.echo(text)
        return
    rows = [{"code_id": code_id, **bucket} for bucket in report["series"]]
    if not sys.stdout.isatty():
        output.table(rows, SERIES_COLUMNS)
        return
    output.line(
        f"{code_id}: {report['total']} scans, {report['people']} by people ({report['unique']} unique), "
        f"{report['bots']} by bots; {report['from']} to {report['to']}, "
        f"by {report['interval']}, {report['tz']}"
    )
    output.line(output.sparkline([bucket["total"] for bucket in report["series"]]))
    output.table(rows, SERIES_COLUMNS[1:])
    for name, entries in report["top"].items():
        if entries:
            output.line(f"{name}: " + ", ".join(f"{e['value']} {e['count']}" for e in entries))


@main.command()
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path))
@click.option("--partial", is_flag=True, help="Create the good rows even when others are refused.")
@click.option(
    "--idempotency-key",
    metavar="KEY",
    help="Send it again with the same key after an interruption: the codes are created once.",
)
@click.pass_context
def bulk(ctx: click.Context, file: Path, partial: bool, idempotency_key: str | None) -> None:
    """Create up to 10,000 codes from a CSV file (- for stdin), in one request.

    The header names the columns: any field a code is created with, as the API names them (target_url
    required; tags separated by |; qrctl get shows every field). Without --partial any bad
    row refuses the whole file, and the problems are printed as "row N: field: message" (exit 1;
    as many as the answer lists, then how many more there were).
    Prints the new codes, in the order of the rows.

    \b
    Examples:
      qrctl bulk tables.csv --idempotency-key spring-tents-2027
      qrctl bulk tables.csv --partial | cut -f1,2 > made.tsv
    """
    try:
        body = sys.stdin.buffer.read() if str(file) == "-" else file.read_bytes()
    except OSError as exc:
        raise click.UsageError(f"cannot read {file}: {exc.strerror or exc}") from None
    headers = {"content-type": "text/csv"}
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    params = {"partial": "true"} if partial else {}
    with api(ctx) as client:
        response = client.request(
            "POST", "/api/v1/qr/bulk", content=body, headers=headers, params=params, allow=(422,)
        )
    answer = response.json()
    if ctx.obj.as_json:
        click.echo(response.text)
    elif answer.get("created"):
        output.table(answer["created"], CODE_COLUMNS)
    for error in answer.get("errors", []):
        output.message(f"row {error['row']}: {error['field']}: {error['message']}")
    if answer.get("errors_omitted"):
        output.message(f"and {answer['errors_omitted']:,} more errors, not listed")
    if response.status_code == 422:
        if not answer.get("errors"):
            output.message(f"qrctl: {answer['error']['message']}")
        ctx.exit(1)
    if answer.get("errors"):
        output.message(
            f"created {len(answer['created'])}; {len({e['row'] for e in answer['errors']})} rows refused"
        )
        ctx.exit(1)


@main.command()
@click.option(
    "--format", "export_format", type=click.Choice(["csv", "zip", "pdf"]), default="csv", show_default=True
)
@click.option("--tag", metavar="TAG", help="Only codes with this tag.")
@click.option("--search", "q", metavar="TEXT", help="Only codes whose id, title or target holds this.")
@click.option(
    "-o", "--output", "target", metavar="FILE", required=True, help="Where to write it (- for stdout)."
)
@click.pass_context
def export(ctx: click.Context, export_format: str, tag: str | None, q: str | None, target: str) -> None:
    """Download every code (or those with --tag, --search) as one file, streamed.

    csv: the columns a bulk upload takes back. zip: a PNG of each code (600 px) and manifest.csv.
    pdf: A4 label sheets of 30 mm codes with their titles and short links, cut marks; for other
    sizes, papers or image options, ask the API (GET /api/v1/qr/export.pdf) directly.

    \b
    Examples:
      qrctl export --tag spring -o spring.csv
      qrctl export --format pdf --tag tables -o tables.pdf
    """
    params = {name: value for name, value in (("tag", tag), ("q", q)) if value is not None}
    written = 0
    with api(ctx) as client, client.stream(f"/api/v1/qr/export.{export_format}", params=params) as response:
        try:
            sink = sys.stdout.buffer if target == "-" else open(target, "wb")  # noqa: SIM115 - closed below
        except OSError as exc:
            output.message(f"qrctl: cannot write {target}: {exc.strerror or exc}")
            ctx.exit(1)
        progress = output.Progress("exporting") if target != "-" else None
        try:
            for chunk in response.iter_bytes():
                sink.write(chunk)
                written += len(chunk)
                if progress is not None:
                    progress.update(written)
        finally:
            if progress is not None:
                progress.close()
            if sink is not sys.stdout.buffer:
                sink.close()
    if target != "-":
        output.message(f"wrote {target} ({written} bytes)")


@main.command()
@click.argument("code_id")
@click.option("--limit", type=click.IntRange(1, limits.MAX_PAGE), default=100, show_default=True)
@click.pass_context
def history(ctx: click.Context, code_id: str, limit: int) -> None:
    """Show a code's changes, newest first: when, which fields, from where.

    \b
    Example:
      qrctl --json history spring-menu | python3 -m json.tool
    """
    with api(ctx) as client:
        page, text = client.json("GET", f"/api/v1/qr/{_path(code_id)}/history", params={"limit": limit})
    if ctx.obj.as_json:
        click.echo(text)
        return
    from services.qrctl.client import dumps

    for entry in page["items"]:
        changes = entry["changes"]
        entry["fields"] = " ".join(f"{name}={dumps(changes[name]['new'])}" for name in sorted(changes))
    output.table(page["items"], HISTORY_COLUMNS)


def _fields(options: dict[str, Any]) -> dict[str, Any]:
    """The API fields among the command's options (named as the API names them) that were given."""
    fields = {
        name: value for name, value in options.items() if name not in _CLEARING_FLAGS and value is not None
    }
    if "redirect_status" in fields:
        fields["redirect_status"] = int(fields["redirect_status"])
    return fields


def _path(code_id: str) -> str:
    """An id as a path segment: refused here already unless it has an id's shape (so that ``.``,
    ``..`` or ``a/b`` can never address another resource)."""
    if not is_well_formed(code_id):
        raise click.BadParameter(f"{code_id!r} is not a code id", param_hint="ID")
    return code_id
