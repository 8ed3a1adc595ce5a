"""The redirect hot path, measured with wrk beside its baselines in the same run.

- cache hits, one Granian worker, scans on, 64 connections, against a bare Starlette app answering
  a constant 302 on the same server (rounds interleaved, medians compared);
- the same app under Hypercorn, and a framework-free ASGI function, for the record;
- through Traefik with the project's middlewares, against Traefik without middleware in front of
  the bare app;
- the cache-miss path over 100,000 codes, each id asked once;
- latency percentiles, answers that were not 3xx, and scans recorded against redirects served;
- the lookup cache against aiocache's memory cache, per call.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import timeit
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from services.ops import edge
from services.ops.processes import Child, granian_command, spawn, venv_command, wait_ready
from services.redirect.cache import LookupCache, Target
from shared.database import asyncpg_dsn
from tests.bench.report import Report
from tests.conftest import free_port

WRK = shutil.which("wrk")
BIN = Path(sys.executable).parent
DURATION = 5
CONNECTIONS = 64
ROUNDS = 3
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
    output = subprocess.run(
        args, capture_output=True, text=True, check=True, env={**os.environ, **(env or {})}
    ).stdout
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
    )


def granian(target: str, *, factory: bool = False, env: dict[str, str] | None = None) -> tuple[Child, str]:
    port = free_port()
    args = venv_command(granian_command("127.0.0.1", port, app=target, factory=factory))
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


async def _sql(dsn: str, statement: str, *args: Any) -> Any:
    connection = await asyncpg.connect(asyncpg_dsn(dsn))
    try:
        return await connection.fetchval(statement, *args)
    finally:
        await connection.close()


def cache_per_call(report: Report) -> None:
    """The lookup cache's hit against aiocache 0.12's memory cache (the design's first choice)."""
    from aiocache import SimpleMemoryCache

    target = Target(location=b"https://example.org/", status=302)
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
    asyncio.run(
        _sql(
            dsn,
            "INSERT INTO qr_codes (id, short_url, target_url) "
            "VALUES ($1::text, 'http://localhost/r/' || $1::text, 'https://example.org/menu')",
            HIT_ID,
        )
    )
    ours_base = f"http://127.0.0.1:{s.redirect_port}"
    httpx.get(f"{ours_base}/r/{HIT_ID}")  # cached from now on
    children: list[Child] = []
    try:
        bare, bare_base = started(*granian("tests.bench.bare_app:app"), "/r/x", 302)
        children.append(bare)

        scans_before = asyncio.run(_sql(dsn, "SELECT count(*) FROM scans WHERE code_id = $1", HIT_ID))
        baseline_runs, ours_runs = [], []
        for _ in range(ROUNDS):
            baseline_runs.append(wrk(f"{bare_base}/r/{HIT_ID}"))
            ours_runs.append(wrk(f"{ours_base}/r/{HIT_ID}"))
        baseline, ours = median(baseline_runs), median(ours_runs)
        base_row = report.add(
            "redirect",
            f"bare Starlette constant 302, Granian 1 worker, {CONNECTIONS} conn",
            baseline.rps,
            "req/s",
        )
        row = report.add(
            "redirect",
            "GET /r/{id} cache hit, scans on, Granian 1 worker",
            ours.rps,
            "req/s",
            p50_ms=ours.p50_ms,
            p99_ms=ours.p99_ms,
            not_3xx=sum(r.not_3xx for r in ours_runs),
        )
        report.ratio(row, base_row)
        time.sleep(2.5)  # the writer flushes every second
        scans = asyncio.run(_sql(dsn, "SELECT count(*) FROM scans WHERE code_id = $1", HIT_ID)) - scans_before
        served = sum(r.requests for r in ours_runs)
        report.add(
            "redirect",
            "scans recorded / redirects wrk counted (in flight at wrk's end count once more)",
            scans / served,
            "ratio",
            scans=scans,
            redirects=served,
        )

        raw, raw_base = started(*granian("tests.bench.bare_app:raw"), "/r/x", 302)
        children.append(raw)
        report.ratio(
            report.add(
                "redirect", "framework-free ASGI constant 302 (ceiling)", wrk(f"{raw_base}/r/x").rps, "req/s"
            ),
            base_row,
        )

        hyper_port = free_port()
        hyper_env = {**os.environ, "DATABASE_URL": dsn, "LOG_LEVEL": "WARNING"}
        hyper = spawn(
            "hypercorn redirect",
            [
                str(BIN / "hypercorn"),
                "--bind",
                f"127.0.0.1:{hyper_port}",
                "services.redirect.app:app_from_env()",
            ],
            env=hyper_env,
        )
        children.append(hyper)
        started(hyper, f"http://127.0.0.1:{hyper_port}", "/livez")
        httpx.get(f"http://127.0.0.1:{hyper_port}/r/{HIT_ID}")
        row = report.add(
            "redirect",
            "the same redirect app under Hypercorn (record)",
            wrk(f"http://127.0.0.1:{hyper_port}/r/{HIT_ID}").rps,
            "req/s",
        )
        report.ratio(row, base_row)

        plain = _traefik(bare_base, children, project_chain=False)
        chain_only = _traefik(bare_base, children, project_chain=True)
        edge_base, edge_chain, edge_ours = [], [], []
        for _ in range(ROUNDS):
            edge_base.append(wrk(f"{plain}/r/{HIT_ID}"))
            edge_chain.append(wrk(f"{chain_only}/r/{HIT_ID}"))
            edge_ours.append(wrk(f"http://127.0.0.1:{s.http_port}/r/{HIT_ID}"))
        edge_row = report.add(
            "edge", "Traefik, no middleware, bare app behind", median(edge_base).rps, "req/s"
        )
        row = report.add(
            "edge",
            "Traefik with the project's chain (headers, rate limit), the service behind",
            median(edge_ours).rps,
            "req/s",
            p99_ms=median(edge_ours).p99_ms,
            not_3xx=sum(r.not_3xx for r in edge_ours),
        )
        report.ratio(row, edge_row)
        chain_row = report.add(
            "edge",
            "Traefik with the project's chain, bare app behind (the chain's own cost)",
            median(edge_chain).rps,
            "req/s",
        )
        report.ratio(chain_row, edge_row)

        _miss_path(dsn, ours_base, report)
        _startup(dsn, report, children)
    finally:
        for child in children:
            child.stop()


def _traefik(backend: str, children: list[Child], *, project_chain: bool) -> str:
    """A Traefik of its own in front of ``backend``: with the project's dynamic file (its routers and
    middlewares), or with one bare router and the same transport settings."""
    folder = Path(tempfile.mkdtemp(prefix="qr-bench-traefik-"))
    http, https, ping = free_port(), free_port(), free_port()
    if project_chain:
        dynamic = edge.DYNAMIC_FILE
    else:
        dynamic = folder / "dynamic.yml"
        dynamic.write_text(
            f"""http:
  routers:
    bare:
      entryPoints: [web]
      rule: "PathPrefix(`/r/`)"
      service: bare
  services:
    bare:
      loadBalancer:
        serversTransport: bare-transport
        servers:
          - url: "{backend}"
  serversTransports:
    bare-transport:
      maxIdleConnsPerHost: 256
"""
        )
    environ = {
        **os.environ,
        "REDIRECT_UPSTREAM": backend,
        "MANAGEMENT_UPSTREAM": backend,
        "ADMIN_ALLOWLIST": "127.0.0.1/32",
        "RATE_LIMIT_AVERAGE": "1000000",
        "RATE_LIMIT_BURST": "1000000",
    }
    child = edge.launch(
        folder,
        edge.EdgeAddresses(http=f"127.0.0.1:{http}", https=f"127.0.0.1:{https}", admin=f"127.0.0.1:{ping}"),
        environ,
        edge.EdgeOptions(log_level="ERROR"),
        dynamic_file=dynamic,
    )
    children.append(child)
    started(child, f"http://127.0.0.1:{http}", "/r/warm", 302)
    return f"http://127.0.0.1:{http}"


def _miss_path(dsn: str, base: str, report: Report) -> None:
    ids = asyncio.run(_ids(dsn))
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as ids_file:
        ids_file.write("\n".join(ids) + "\n")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(MISS_SCRIPT)
    result = wrk(base, duration=DURATION, script=script.name, env={"IDS_FILE": ids_file.name})
    report.add(
        "redirect",
        f"cache misses: each of {len(ids):,} codes asked once (first {min(result.requests, len(ids)):,})",
        result.rps,
        "req/s",
        p50_ms=result.p50_ms,
        p99_ms=result.p99_ms,
        not_3xx=result.not_3xx,
    )
    if result.requests > len(ids):
        report.note("the miss run went past the id list: later requests were cache hits")


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
