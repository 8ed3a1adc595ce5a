"""The redirect hot path and the edge, measured with wrk beside their baselines in the same run.

Every throughput row runs wrk -t1 -c64 with an iPhone's user agent against a cache hit, in rounds
interleaved with its baseline: a row shows its median round, its ratio is the median of the rounds'
own ratios (both sides of one round run back to back; on this kind of machine a run's figure moves
by a tenth from one minute to the next, on both sides alike):

- direct: the service (one Granian worker, then two) against a bare Starlette app answering a
  constant 302 under the same Granian options;
- through the edge: the project's Traefik (its static file, dynamic file and GOGC) in front of the
  service, against a Traefik with no middleware, no metrics and the default transport in front of
  the bare app; and the project's Traefik in front of the bare app, its own cost;
- a code with seven redirect rules, the last one matching, against the same code without rules
  (``python -m tests.bench rules`` alone);
- Traefik's own metrics, in the ways they could be kept, each in front of the service;
- p50/p99 latency and answers that were not 3xx, per row; every run hits a code of its own, and
  the scans recorded for each are counted against the redirects wrk saw served;
- the cache-miss path over 100,000 codes, each id asked once, with the lookups on the primary and,
  beside it, on a streaming replica of it (as EMBEDDED_REPLICA=true runs); start-up; and the lookup
  cache against aiocache's memory cache, per call.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import psutil

from services.ops import edge, embedded
from services.ops.processes import Child, granian_command, spawn, venv_command, wait_ready
from services.ops.settings import StackSettings
from services.redirect.answers import CodeAnswer
from services.redirect.cache import LookupCache
from shared.database import asyncpg_dsn
from tests.bench import cpu
from tests.bench.report import Report
from tests.conftest import free_port

WRK = shutil.which("wrk")
BIN = Path(sys.executable).parent
DURATION = 5
CONNECTIONS = 64
ROUNDS = 7
HIT_ID = "benchhit01"
MISS_CODES = 100_000
MISS_SCRIPT = """
local ids = {}
for line in io.lines(os.getenv("IDS_FILE")) do ids[#ids + 1] = line end
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", "/r/" .. ids[(i - 1) % #ids + 1])
end
"""


@dataclass
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    not_3xx: int
    socket_errors: int
    runs: list[int] | None = None  # each round's requests/s, when this is the median of several
    wrk_seconds: float = 0.0  # the load generator's own CPU
    # CPU seconds per 100,000 requests by process group (each the median of the rounds), and each
    # round's own figures, when the run's processes were named.
    cpu: dict[str, float] | None = None
    cpu_rounds: dict[str, list[float]] | None = None


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(
    url: str, *, duration: int = DURATION, script: str | None = None, env: dict[str, str] | None = None
) -> WrkResult:
    assert WRK is not None
    args = [WRK, "-t1", f"-c{CONNECTIONS}", f"-d{duration}s", "--latency", url]
    if script is not None:
        args[1:1] = ["-s", script]
    cpu_before = cpu.children_seconds()
    output = subprocess.run(
        args, capture_output=True, text=True, check=True, env={**os.environ, **(env or {})}
    ).stdout
    wrk_seconds = cpu.children_seconds() - cpu_before
    latencies = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", output, re.MULTILINE))
    not_3xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    return WrkResult(
        rps=float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),  # type: ignore[union-attr]
        p50_ms=_ms(latencies["50"]),
        p99_ms=_ms(latencies["99"]),
        requests=int(re.search(r"(\d+) requests in", output).group(1)),  # type: ignore[union-attr]
        not_3xx=int(not_3xx.group(1)) if not_3xx else 0,
        socket_errors=sum(int(n) for n in errors.groups()) if errors else 0,
        wrk_seconds=wrk_seconds,
    )


def granian(
    target: str, *, factory: bool = False, workers: int = 1, env: dict[str, str] | None = None
) -> tuple[Child, str]:
    """``target`` served as the project serves the redirect service (same Granian options)."""
    port = free_port()
    args = venv_command(granian_command("127.0.0.1", port, app=target, factory=factory, workers=workers))
    child = spawn(f"granian {target}", args, env={**os.environ, **(env or {})})
    return child, f"http://127.0.0.1:{port}"


def started(child: Child, base: str, probe: str, status: int = 200) -> tuple[Child, str]:
    try:
        wait_ready(child, f"{base}{probe}", timeout=60, status=status)
    except Exception:
        child.stop()
        raise
    return child, base


def median(results: list[WrkResult]) -> WrkResult:
    return sorted(results, key=lambda r: r.rps)[len(results) // 2]


async def _fetch(dsn: str, statement: str, *args: Any) -> list[Any]:
    connection = await asyncpg.connect(asyncpg_dsn(dsn))
    try:
        return [tuple(row) for row in await connection.fetch(statement, *args)]
    finally:
        await connection.close()


async def _sql(dsn: str, statement: str, *args: Any) -> Any:
    connection = await asyncpg.connect(asyncpg_dsn(dsn))
    try:
        return await connection.fetchval(statement, *args)
    finally:
        await connection.close()


def cache_per_call(report: Report) -> None:
    """The lookup cache's hit against aiocache 0.12's memory cache (the design's first choice)."""
    from aiocache import SimpleMemoryCache

    target = CodeAnswer(location=b"https://example.org/", status=302)
    ours = LookupCache(max_entries=100_000, ttl=300, negative_ttl=5)
    ours.put("abcdefghjk", target)
    number = 200_000
    ours_us = timeit.timeit(lambda: ours.get("abcdefghjk"), number=number) / number * 1e6

    async def aiocache_us(timeout: float | None) -> float:
        cache = SimpleMemoryCache(timeout=timeout)
        await cache.set("abcdefghjk", target, ttl=300)
        loops = 50_000
        start = time.perf_counter()
        for _ in range(loops):
            await cache.get("abcdefghjk")
        return (time.perf_counter() - start) / loops * 1e6

    default = asyncio.run(aiocache_us(5))
    untimed = asyncio.run(aiocache_us(None))
    base = report.add("cache", "aiocache SimpleMemoryCache.get, default timeout (await)", default, "us/call")
    row = report.add("cache", "aiocache SimpleMemoryCache.get, timeout=None (await)", untimed, "us/call")
    report.ratio(row, base)
    row = report.add("cache", "LookupCache.get (bounded LRU, TTL, plain call)", ours_us, "us/call")
    report.ratio(row, base)


def run(stack: Any, report: Report) -> None:
    cache_per_call(report)
    if WRK is None:
        report.note(
            "wrk not found: redirect throughput not measured; install it (Debian: apt-get install wrk)"
        )
        return
    s = stack.settings
    dsn = stack.dsn
    codes = Codes(dsn)
    ours_base = f"http://127.0.0.1:{s.redirect_port}"
    codes.make("warm")  # what the edges' readiness probes ask for
    codes.make(HIT_ID)  # the start-up measurement's first redirect
    stack_pid = {child.name: child.pid for child in stack.children}
    service, stack_edge = (stack_pid["redirect service"],), (stack_pid["traefik"],)
    postgres = (stack.database.pid,) if stack.database is not None else ()
    children: list[Child] = []
    try:
        bare, bare_base = started(*granian("tests.bench.bare_app:app"), "/r/x", 302)
        children.append(bare)
        plain = _traefik(bare_base, children, project=False)
        project_edge = f"http://127.0.0.1:{s.http_port}"

        chain = _traefik(bare_base, children, project=True)
        one = _rounds(
            codes,
            ROUNDS,
            watch={
                "base": {"app": (bare.pid,)},
                "ours": {"app": service, "postgres": postgres},
                "plain": {"traefik": (SERVING[plain],), "app": (bare.pid,)},
                "edge": {"traefik": stack_edge, "app": service, "postgres": postgres},
                "chain": {"traefik": (SERVING[chain],), "app": (bare.pid,)},
            },
            base=bare_base,
            ours=Ours(ours_base),
            plain=plain,
            edge=Ours(project_edge),
            chain=chain,
        )
        base_row = _row(
            report,
            "redirect",
            f"bare Starlette constant 302, Granian 1 worker, {CONNECTIONS} conn",
            one["base"],
        )
        report.ratio(
            _row(report, "redirect", "GET /r/{id} cache hit, scans on, direct, 1 worker", one["ours"]),
            base_row,
        )
        edge_row = _row(
            report,
            "edge",
            "Traefik: no middleware, no metrics, default transport; bare app behind",
            one["plain"],
        )
        report.ratio(
            _row(report, "edge", "the project's edge, the service behind (1 worker)", one["edge"]), edge_row
        )
        report.ratio(
            _row(report, "edge", "the project's edge, bare app behind (the edge's own cost)", one["chain"]),
            edge_row,
        )
        _cpu_rows(report, one)

        # Two workers (REDIRECT_WORKERS=2), the baselines with two workers too.
        bare2, bare2_base = started(*granian("tests.bench.bare_app:app", workers=2), "/r/x", 302)
        children.append(bare2)
        ours2, ours2_base = started(
            *granian(
                "services.redirect.app:app_from_env",
                factory=True,
                workers=2,
                env={"DATABASE_URL": dsn, "LOG_LEVEL": "WARNING"},
            ),
            "/livez",
        )
        children.append(ours2)
        plain2 = _traefik(bare2_base, children, project=False)
        edge2 = _traefik(ours2_base, children, project=True)
        bare_workers, workers = _workers(bare2.pid), _workers(ours2.pid)
        two = _rounds(
            codes,
            ROUNDS_2,
            watch={
                "base": {"app": (bare2.pid,), **bare_workers},
                "ours": {"app": (ours2.pid,), **workers, "postgres": postgres},
                "plain": {"traefik": (SERVING[plain2],), "app": (bare2.pid,), **bare_workers},
                "edge": {"traefik": (SERVING[edge2],), "app": (ours2.pid,), **workers, "postgres": postgres},
            },
            base=bare2_base,
            ours=Ours(ours2_base),
            plain=plain2,
            edge=Ours(edge2),
        )
        base2_row = _row(report, "redirect", "bare Starlette constant 302, Granian 2 workers", two["base"])
        report.ratio(
            _row(report, "redirect", "GET /r/{id} cache hit, scans on, direct, 2 workers", two["ours"]),
            base2_row,
        )
        edge2_row = _row(
            report,
            "edge",
            "Traefik: no middleware, no metrics, default transport; bare app, 2 workers",
            two["plain"],
        )
        report.ratio(
            _row(report, "edge", "the project's edge, the service behind (2 workers)", two["edge"]), edge2_row
        )
        _cpu_rows(report, two, ", 2 workers")

        _metrics_options(ours_base, {"app": service}, plain, bare.pid, children, codes, report)

        raw, raw_base = started(*granian("tests.bench.bare_app:raw"), "/r/x", 302)
        children.append(raw)
        report.ratio(
            report.add(
                "redirect", "framework-free ASGI constant 302 (ceiling)", wrk(f"{raw_base}/r/x").rps, "req/s"
            ),
            base_row,
        )
        _hypercorn(dsn, codes, children, report, base_row)

        time.sleep(2.5)  # the writers flush every second
        recorded, served, worst = codes.recorded()
        report.add(
            "redirect",
            f"scans recorded / redirects served, every run above (worst of {codes.count} runs: {worst:.3f})",
            recorded / served,
            "ratio",
            scans=recorded,
            redirects=served,
        )
        rules(stack, report, codes)
        primary_misses = _miss_path(dsn, ours_base, report)
        _miss_on_replica(stack, report, primary_misses)
        _startup(dsn, report, children)
    finally:
        for child in children:
            child.stop()


def seven_rules(now: datetime) -> str:
    """The kinds of redirect rules a code may have, seven, of which wrk's iPhone (no Accept-Language,
    no query string, an address no GeoIP file places) meets only the last."""
    paris = now.astimezone(ZoneInfo("Europe/Paris"))
    elsewhen = [(paris + timedelta(hours=shift)).strftime("%H:%M") for shift in (3, 4)]
    around = [(now + timedelta(days=shift)).isoformat() for shift in (-1, 1)]
    return json.dumps(
        [
            {"if": {"device": ["android"]}, "target_url": "https://play.google.com/store/apps/details?id=x"},
            {"if": {"language": ["de"]}, "target_url": "https://example.de/menu"},
            {"if": {"country": ["FR", "BE"]}, "target_url": "https://example.fr/menu"},
            {"if": {"query": {"src": "poster"}}, "target_url": "https://example.org/poster"},
            {"if": {"hours": elsewhen, "tz": "Europe/Paris"}, "target_url": "https://example.org/later"},
            {"if": {"device": ["desktop"], "between": around}, "target_url": "https://example.org/desk"},
            {"if": {"between": around}, "target_url": "https://example.org/now"},
        ]
    )


def rules(stack: Any, report: Report, codes: Codes | None = None) -> None:
    """A cache hit of a code with seven redirect rules (the last one matching) against the same code
    without rules, direct to the stack's one redirect worker, in interleaved rounds."""
    if WRK is None:
        report.note("wrk not found: redirect rules not measured")
        return
    if codes is None:  # alone (python -m tests.bench rules); within run(), its codes are there
        codes = Codes(stack.dsn)
        codes.make("warm")  # what the edge's readiness probe asks for
    base = f"http://127.0.0.1:{stack.settings.redirect_port}"
    service = (next(child.pid for child in stack.children if child.name == "redirect service"),)
    measured = _rounds(
        codes,
        ROUNDS,
        watch={"plain": {"app": service}, "rules": {"app": service}},
        plain=Ours(base),
        rules=Ours(base, seven_rules(datetime.now(UTC))),
    )
    plain_row = _row(report, "rules", "GET /r/{id} cache hit, no rules, direct, 1 worker", measured["plain"])
    report.ratio(
        _row(
            report, "rules", "seven rules, last matching vs no rules, direct to one worker", measured["rules"]
        ),
        plain_row,
    )
    report.ratio(
        _cpu_row(
            report, "rules", "seven rules, last matching: the worker's CPU", measured["rules"], ("app",)
        ),
        _cpu_row(report, "rules", "no rules: the worker's CPU", measured["plain"], ("app",)),
    )


UA_SCRIPT = str(Path(__file__).with_name("iphone.lua"))
# The Traefiks' folders and wrk's scripts, removed when the bench ends.
SCRATCH = tempfile.TemporaryDirectory(prefix="qr-bench-redirect-")
ROUNDS_2 = 5
ROUNDS_METRICS = 3  # the metrics options: six Traefiks a round
SERVING: dict[str, int] = {}  # the process answering at each base URL the bench started
PINGS: dict[str, str] = {}  # each Traefik's ping (and, with debug, API) address, by its base URL


class Codes:
    """A code of its own for every measured run, so that each run's scans can be counted against
    the redirects wrk saw answered."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.runs: list[tuple[str, int]] = []  # (code id, redirects served)

    @property
    def count(self) -> int:
        return len(self.runs)

    def make(self, code_id: str, rules: str = "[]") -> str:
        asyncio.run(
            _sql(
                self.dsn,
                "INSERT INTO qr_codes (id, short_url, target_url, rules) "
                "VALUES ($1::text, 'http://localhost/r/' || $1::text, 'https://example.org/menu', $2::jsonb)",
                code_id,
                rules,
            )
        )
        return code_id

    def run(self, base: str, rules: str = "[]") -> WrkResult:
        code_id = self.make(f"bench{len(self.runs):05d}", rules)
        httpx.get(f"{base}/r/{code_id}", timeout=10)  # cached from now on (and counted below)
        result = wrk(f"{base}/r/{code_id}", script=UA_SCRIPT)
        self.runs.append((code_id, result.requests + 1))
        return result

    def recorded(self) -> tuple[int, int, float]:
        """Scans recorded and redirects served over all runs, and the worst run's ratio (wrk
        counts the requests completed in its time; one in flight at its end is recorded too)."""
        counts = dict(
            asyncio.run(
                _fetch(
                    self.dsn,
                    "SELECT code_id, count(*) FROM scans WHERE code_id = ANY($1::text[]) GROUP BY code_id",
                    [code_id for code_id, _ in self.runs],
                )
            )
        )
        ratios = [counts.get(code_id, 0) / served for code_id, served in self.runs]
        worst = max(ratios, key=lambda ratio: abs(ratio - 1)) if ratios else 1.0
        return sum(counts.values()), sum(served for _, served in self.runs), worst


@dataclass(frozen=True)
class Ours:
    """A URL in front of the redirect service: each run asks for a code of its own (with these
    redirect rules, as JSON)."""

    base: str
    rules: str = "[]"


# Process groups: a name ("traefik", "app", "postgres") and the roots of its process trees.
Groups = dict[str, tuple[int, ...]]


def _rounds(
    codes: Codes, rounds: int, *, watch: dict[str, Groups] | None = None, **targets: str | Ours
) -> dict[str, WrkResult]:
    """Every target once per round, round after round (so that what the machine does meanwhile
    falls on all of them alike), and the median of each; a bare app answers any id. For the targets
    in ``watch``, the CPU each of its process groups and wrk spent per 100,000 requests, per round."""
    watch = watch or {}
    runs: dict[str, list[WrkResult]] = {name: [] for name in targets}
    figures: dict[str, list[dict[str, float]]] = {name: [] for name in targets}
    for target in targets.values():  # a short warm-up each: connections, caches, the first flushes
        base = target.base if isinstance(target, Ours) else target
        wrk(f"{base}/r/warm", duration=2, script=UA_SCRIPT)
    for _ in range(rounds):
        for name, target in targets.items():
            groups = watch.get(name, {})
            before = cpu.snapshot(groups)
            result = (
                codes.run(target.base, target.rules)
                if isinstance(target, Ours)
                else wrk(f"{target}/r/x", script=UA_SCRIPT)
            )
            if groups:
                spent = cpu.per_requests(before, cpu.snapshot(groups), result.requests)
                spent["wrk"] = round(result.wrk_seconds * cpu.PER / max(result.requests, 1), 3)
                figures[name].append(spent)
            runs[name].append(result)
    medians = {}
    for name, results in runs.items():
        middle = median(results)
        middle.not_3xx = sum(r.not_3xx for r in results)
        middle.runs = [round(r.rps) for r in results]
        if figures[name]:
            middle.cpu_rounds = {group: [f[group] for f in figures[name]] for group in figures[name][0]}
            middle.cpu = {group: statistics.median(each) for group, each in middle.cpu_rounds.items()}
        medians[name] = middle
    return medians


def _cpu_rows(report: Report, runs: dict[str, WrkResult], workers: str = "") -> None:
    """CPU per redirect of each pair beside its baseline's (lower is better: a ratio of 1.18 is 18%
    more CPU per redirect); ``app`` is the Granian server with all its workers, each worker is also
    shown apart when there are several. PostgreSQL's and wrk's are shown beside, not summed."""
    app = ("app",)
    pair = ("traefik", "app")
    bare = _cpu_row(
        report, "cpu", f"bare Starlette app on Granian, direct: the worker{workers}", runs["base"], app
    )
    report.ratio(
        _cpu_row(report, "cpu", f"the redirect service, direct: the worker{workers}", runs["ours"], app), bare
    )
    plain = _cpu_row(report, "cpu", f"bare Traefik + bare app: both processes{workers}", runs["plain"], pair)
    report.ratio(
        _cpu_row(
            report,
            "cpu",
            f"the project's edge + the redirect service: both processes{workers}",
            runs["edge"],
            pair,
        ),
        plain,
    )
    if "chain" in runs:
        report.ratio(
            _cpu_row(report, "cpu", "the project's edge + bare app: both processes", runs["chain"], pair),
            plain,
        )


def _workers(server_pid: int) -> Groups:
    """The worker processes of the Granian server at ``server_pid``, each a group of its own."""
    workers = psutil.Process(server_pid).children()
    return {f"worker {n}": (worker.pid,) for n, worker in enumerate(workers, 1)}


def _cpu_row(report: Report, section: str, name: str, result: WrkResult, parts: tuple[str, ...]) -> Any:
    """CPU seconds per 100,000 redirects of ``parts`` of the run's processes together (each
    round's sum; the row's value is their median), the groups apart beside it."""
    assert result.cpu_rounds is not None, "the run's processes were not watched"
    rounds = [
        round(sum(result.cpu_rounds[part][i] for part in parts), 3)
        for i in range(len(result.cpu_rounds[parts[0]]))
    ]
    return report.add(section, name, statistics.median(rounds), "s/100k", rounds=rounds, **(result.cpu or {}))


def _row(report: Report, section: str, name: str, result: WrkResult, **extra: Any) -> Any:
    return report.add(
        section,
        name,
        result.rps,
        "req/s",
        p50_ms=result.p50_ms,
        p99_ms=result.p99_ms,
        not_3xx=result.not_3xx,
        rounds=result.runs,
        **extra,
    )


def _metrics_options(
    ours_base: str,
    service: Groups,
    plain: str,
    bare_pid: int,
    children: list[Child],
    codes: Codes,
    report: Report,
) -> None:
    """Traefik's own metrics and its garbage collector, the ways they could be set, each in front of
    the service and beside the bare Traefik in the same rounds: what the project ships (entry points
    only, EDGE_GOGC), and the alternatives it was chosen over. Each row also shows the Traefik's and
    the worker's CPU per 100,000 redirects (their sum is ``pair``)."""
    shipped = f"GOGC={StackSettings.edge_gogc}"
    options: dict[str, tuple[str | None, str | None]] = {
        f"shipped: entry points only, none on the hot router, {shipped}": (None, None),
        f"entry points only, the hot router counted too (before), {shipped}": ("hot", None),
        f"labels per router and service, the hot router counted, {shipped}": ("routers", None),
        f"no metrics section at all, {shipped}": ("none", None),
    }
    for other in ("100", "200", "400"):
        if other != str(StackSettings.edge_gogc):
            default = " (Go's default)" if other == "100" else ""
            options[f"shipped, GOGC={other}{default}"] = (None, other)
    targets: dict[str, str | Ours] = {"plain": plain}
    watch: dict[str, Groups] = {"plain": {"traefik": (SERVING[plain],), "app": (bare_pid,)}}
    for name, (metrics, gogc) in options.items():
        base = _traefik(ours_base, children, project=True, metrics=metrics, gogc=gogc)
        targets[name] = Ours(base)
        watch[name] = {"traefik": (SERVING[base],), **service}
    results = _rounds(codes, ROUNDS_METRICS, watch=watch, **targets)
    baseline = _metrics_row(
        report, "Traefik: no middleware, no metrics, default transport; bare app", results["plain"]
    )
    for name in options:
        report.ratio(_metrics_row(report, f"the service behind, {name}", results[name]), baseline)


def _metrics_row(report: Report, name: str, result: WrkResult) -> Any:
    """A row of the metrics section, with its Traefik's and worker's CPU per 100,000 redirects."""
    assert result.cpu is not None
    traefik, app = result.cpu["traefik"], result.cpu["app"]
    return _row(report, "edge metrics", name, result, traefik=traefik, app=app, pair=round(traefik + app, 3))


def _hypercorn(dsn: str, codes: Codes, children: list[Child], report: Report, base_row: Any) -> None:
    hyper_port = free_port()
    hyper = spawn(
        "hypercorn redirect",
        [str(BIN / "hypercorn"), "--bind", f"127.0.0.1:{hyper_port}", "services.redirect.app:app_from_env()"],
        env={**os.environ, "DATABASE_URL": dsn, "LOG_LEVEL": "WARNING"},
    )
    children.append(hyper)
    started(hyper, f"http://127.0.0.1:{hyper_port}", "/livez")
    row = report.add(
        "redirect",
        "the same redirect app under Hypercorn (record)",
        codes.run(f"http://127.0.0.1:{hyper_port}").rps,
        "req/s",
    )
    report.ratio(row, base_row)


_HOT_ROUTER_UNCOUNTED = """      observability:
        metrics: false
"""
_ROUTER_METRICS = """metrics:
  prometheus:
    entryPoint: traefik
    addRoutersLabels: true
    addServicesLabels: true
"""


def _traefik(
    backend: str,
    children: list[Child],
    *,
    project: bool,
    metrics: str | None = None,
    gogc: str | None = None,
    debug: bool = False,
) -> str:
    """A Traefik of its own in front of ``backend``: the project's (its static file and dynamic file,
    GOGC as shipped), or the baseline: no middleware, no metrics, the default transport. ``debug``:
    its pprof profiles on the ping port (tests/bench/profile.py)."""
    folder = Path(tempfile.mkdtemp(prefix="traefik-", dir=SCRATCH.name))
    http, https, ping = free_port(), free_port(), free_port()
    addresses = edge.EdgeAddresses(
        http=f"127.0.0.1:{http}", https=f"127.0.0.1:{https}", admin=f"127.0.0.1:{ping}"
    )
    dynamic_file = edge.DYNAMIC_FILE
    if not project:
        dynamic_file = folder / "dynamic.yml"
    elif metrics in ("hot", "routers"):  # the shipped routes with Traefik's metrics on the hot router too
        dynamic_file = folder / "dynamic.yml"
        shipped = edge.DYNAMIC_FILE.read_text()
        assert shipped.count(_HOT_ROUTER_UNCOUNTED) == 2, "the hot routers' observability blocks moved"
        dynamic_file.write_text(shipped.replace(_HOT_ROUTER_UNCOUNTED, ""))
    static = edge.static_config(
        addresses, dynamic_file=str(dynamic_file), options=edge.EdgeOptions(log_level="ERROR")
    )
    if not project or metrics in ("routers", "none"):
        cut, end = static.index("# Entry points only"), static.index("providers:")
        static = static[:cut] + (_ROUTER_METRICS if metrics == "routers" else "") + static[end:]
    if not project:
        (folder / "dynamic.yml").write_text(
            f"""http:
  routers:
    bare:
      entryPoints: [web]
      rule: "PathPrefix(`/r/`)"
      service: bare
  services:
    bare:
      loadBalancer:
        servers:
          - url: "{backend}"
"""
        )
    if debug:
        static += "api:\n  insecure: true\n  dashboard: false\n  debug: true\n"
    (folder / "traefik.yml").write_text(static)
    environ = {
        **os.environ,
        "REDIRECT_UPSTREAM": backend,
        "MANAGEMENT_UPSTREAM": backend,
        "ADMIN_ALLOWLIST": "127.0.0.1/32",
        "RATE_LIMIT_AVERAGE": "1000000",
        "RATE_LIMIT_BURST": "1000000",
        "GOGC": gogc or (str(StackSettings.edge_gogc) if project else "100"),
    }
    child = spawn(
        "traefik", [str(edge.traefik_binary()), f"--configfile={folder / 'traefik.yml'}"], env=environ
    )
    children.append(child)
    wait_ready(child, f"http://127.0.0.1:{ping}/ping")
    started(child, f"http://127.0.0.1:{http}", "/r/warm", 302)
    SERVING[f"http://127.0.0.1:{http}"] = child.pid
    PINGS[f"http://127.0.0.1:{http}"] = f"http://127.0.0.1:{ping}"
    return f"http://127.0.0.1:{http}"


def _miss_path(dsn: str, base: str, report: Report, where: str = "lookups on the primary") -> Any:
    ids = asyncio.run(_ids(dsn))
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, dir=SCRATCH.name) as ids_file:
        ids_file.write("\n".join(ids) + "\n")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False, dir=SCRATCH.name) as script:
        script.write(MISS_SCRIPT)
    result = wrk(base, duration=DURATION, script=script.name, env={"IDS_FILE": ids_file.name})
    row = report.add(
        "redirect",
        f"cache misses, {where}: each of {len(ids):,} codes asked once "
        f"(first {min(result.requests, len(ids)):,})",
        result.rps,
        "req/s",
        p50_ms=result.p50_ms,
        p99_ms=result.p99_ms,
        not_3xx=result.not_3xx,
    )
    if result.requests > len(ids):
        report.note("the miss run went past the id list: later requests were cache hits")
    return row


def _miss_on_replica(stack: Any, report: Report, primary_row: Any) -> None:
    """The same miss path, a fresh process with its lookups on a hot standby of the database (as
    EMBEDDED_REPLICA=true runs it), its buffers warmed first as the primary's are."""
    if stack.database is None:
        report.note("no embedded server: the replica's miss path not measured")
        return
    replica = embedded.start_replica(Path(SCRATCH.name) / "replica", stack.database)
    child = None
    try:
        asyncio.run(
            _sql(replica.dsn(), "SELECT count(*), sum(length(target_url)) FROM qr_codes WHERE lower(id) > ''")
        )
        env = {"DATABASE_URL": stack.dsn, "REDIRECT_DATABASE_URL": replica.dsn(), "LOG_LEVEL": "WARNING"}
        child, base = started(*granian("services.redirect.app:app_from_env", factory=True, env=env), "/livez")
        report.ratio(_miss_path(stack.dsn, base, report, "lookups on a streaming replica"), primary_row)
    finally:
        if child is not None:
            child.stop()
        replica.release()


async def _ids(dsn: str) -> list[str]:
    connection = await asyncpg.connect(asyncpg_dsn(dsn))
    try:
        rows = await connection.fetch("SELECT id FROM qr_codes ORDER BY random() LIMIT $1", MISS_CODES)
        return [row["id"] for row in rows]
    finally:
        await connection.close()


def _startup(dsn: str, report: Report, children: list[Child]) -> None:
    begin = time.perf_counter()
    child, base = granian(
        "services.redirect.app:app_from_env", factory=True, env={"DATABASE_URL": dsn, "LOG_LEVEL": "WARNING"}
    )
    children.append(child)
    started(child, base, "/livez")
    ready = time.perf_counter() - begin
    answered = httpx.get(f"{base}/r/{HIT_ID}").status_code
    report.add(
        "redirect",
        "start-up: process spawned to /livez answering (database up)",
        ready * 1000,
        "ms",
        first_redirect=answered,
    )
