"""Where the CPU of a redirect through the edge goes: ``python -m tests.bench profile``.

Two pairs under the bench's load (wrk -t1 -c64, an iPhone's agent, one code, cache hits): the
baseline (a Traefik with no middleware in front of the bare Starlette app) and the project's
(Traefik with its static and dynamic files in front of the redirect service, one worker). For
each, while wrk runs: Traefik's own CPU profile (pprof, from its debug API on the ping port) and
py-spy's samples of the Granian worker (non-blocking; only samples holding the GIL, which is the
worker's serial time: what its Python and the event loop do per redirect).

Written to ``bench-profiles/``: ``<pair>-traefik.pb.gz`` (read with ``go tool pprof``) and
``<pair>-worker.txt`` (collapsed stacks, for flame graphs); printed: each profile's top entries by
own time and by inclusive time (for the worker, leaving out the frames every sample has: Granian's
start-up). Without ``go`` the Traefik profiles are kept but not
summarised; without py-spy the workers are left out, said in one line each.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from services.ops.processes import Child
from tests.bench import redirect
from tests.bench.report import Report

OUT = Path("bench-profiles")
SECONDS = 20  # each profile's length; wrk runs a little longer around it
TOP = 18
PY_SPY = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
GO = shutil.which("go")
# PROFILE_NATIVE=1: native frames too (Granian's Rust, the interpreter, uvloop); py-spy then pauses
# the worker for each sample, which slows it.
NATIVE = os.environ.get("PROFILE_NATIVE") == "1"


def run(stack: Any, report: Report) -> None:
    if redirect.WRK is None:
        report.note("wrk not found: nothing profiled")
        return
    OUT.mkdir(exist_ok=True)
    codes = redirect.Codes(stack.dsn)
    codes.make("warm")
    children: list[Child] = []
    try:
        bare, bare_base = redirect.started(*redirect.granian("tests.bench.bare_app:app"), "/r/x", 302)
        children.append(bare)
        service = next(child for child in stack.children if child.name == "redirect service")
        ours_base = f"http://127.0.0.1:{stack.settings.redirect_port}"
        pairs = {
            "bare": (redirect._traefik(bare_base, children, project=False, debug=True), bare.pid, "/r/x"),
            "edge": (
                redirect._traefik(ours_base, children, project=True, debug=True),
                service.pid,
                f"/r/{codes.make('profiled')}",
            ),
        }
        for name, (base, server_pid, path) in pairs.items():
            _profile(name, base, server_pid, path, report)
    finally:
        for child in children:
            child.stop()


def _profile(name: str, base: str, server_pid: int, path: str, report: Report) -> None:
    worker = next(iter(redirect._workers(server_pid).values()), (server_pid,))[0]
    redirect.wrk(f"{base}{path}", duration=3, script=redirect.UA_SCRIPT)  # warm
    results: list[redirect.WrkResult] = []
    load = threading.Thread(
        target=lambda: results.append(
            redirect.wrk(f"{base}{path}", duration=SECONDS + 4, script=redirect.UA_SCRIPT)
        )
    )
    load.start()
    spy = None
    stacks = OUT / f"{name}-worker.txt"
    if Path(PY_SPY).exists():
        spy = subprocess.Popen(
            [
                *(PY_SPY, "record", "--pid", str(worker), "--duration", str(SECONDS), "--rate", "500"),
                *(("--native",) if NATIVE else ("--nonblocking",)),
                *("--gil", "--format", "raw", "--output", str(stacks)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    pprof = httpx.get(
        f"{redirect.PINGS[base]}/debug/pprof/profile", params={"seconds": SECONDS}, timeout=SECONDS + 30
    )
    pprof.raise_for_status()
    (OUT / f"{name}-traefik.pb.gz").write_bytes(pprof.content)
    if spy is not None:
        spy.wait(timeout=60)
    load.join()
    rps = results[0].rps if results else 0.0
    print(f"\n=== {name}: {rps:,.0f} redirects/s under the profiles ===")
    if GO:
        print(_pprof_top(OUT / f"{name}-traefik.pb.gz"))
    else:
        report.note(f"go not found: {name}'s Traefik profile kept in {OUT}, not summarised")
    if spy is None:
        report.note("py-spy not found: the workers were not profiled (pip install py-spy)")
    elif stacks.exists():
        print(_stacks_top(stacks))


def _pprof_top(profile: Path) -> str:
    top = subprocess.run(
        [str(GO), "tool", "pprof", "-top", f"-nodecount={TOP}", str(profile)],
        capture_output=True,
        text=True,
        check=False,
    )
    lines = top.stdout.splitlines()
    cumulative = subprocess.run(
        [str(GO), "tool", "pprof", "-top", "-cum", f"-nodecount={TOP + 12}", str(profile)],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.splitlines()
    own, inclusive = "\n".join(lines[3:]), "\n".join(cumulative[5:])
    return f"Traefik, by own time:\n{own}\nTraefik, inclusive:\n{inclusive}"


def _stacks_top(stacks: Path) -> str:
    """py-spy's collapsed stacks: the top functions by own and by inclusive samples."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in stacks.read_text().splitlines():
        frames, _, count = line.rpartition(" ")
        if not frames:
            continue
        samples = int(count)
        total += samples
        names = [_short(frame) for frame in frames.split(";")]
        own[names[-1]] += samples
        for frame in set(names):
            inclusive[frame] += samples
    rows = [f"worker, {total} samples; by own time:"]
    rows += [f"  {n / total:6.1%}  {frame}" for frame, n in own.most_common(TOP)]
    rows.append("worker, inclusive (Granian's start-up frames left out):")
    shown = [(frame, n) for frame, n in inclusive.most_common() if not frame.endswith(_START_UP)][:TOP]
    rows += [f"  {n / total:6.1%}  {frame}" for frame, n in shown]
    return "\n".join(rows)


# The frames under which a Granian worker runs its event loop: in every sample, so no information.
_START_UP = tuple(
    f"({name})"
    for name in (
        "granian",
        "cli.py",
        "core.py",
        "mp.py",
        "common.py",
        "process.py",
        "popen_fork.py",
        "context.py",
    )
)


def _short(frame: str) -> str:
    """``function (path/to/module.py:12)`` as ``function (module.py)``: lines apart, one entry."""
    function, _, where = frame.partition(" (")
    return f"{function} ({Path(where.rstrip(')').rsplit(':', 1)[0]).name})" if where else function
