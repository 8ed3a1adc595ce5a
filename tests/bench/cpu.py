"""CPU seconds per process, read around a run: on a shared 2-core machine a row's requests/s moves
by a tenth from one minute to the next, its CPU per request far less.

A group is one or more process trees (a server and the workers it forked, PostgreSQL and its
backends), summed over user and system time as /proc keeps them (psutil reads them); the load
generator's own is what the bench process's waited-for children used (getrusage).
"""

from __future__ import annotations

import resource
from collections.abc import Iterable, Mapping

import psutil

PER = 100_000  # figures are CPU seconds per this many requests


def tree_seconds(roots: Iterable[int]) -> float:
    """User + system CPU seconds of every process in the trees under ``roots`` (live ones)."""
    total = 0.0
    for root in roots:
        try:
            parent = psutil.Process(root)
            processes = [parent, *parent.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        for process in processes:
            try:
                times = process.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
    return total


def children_seconds() -> float:
    """CPU seconds of this process's children that were waited for (wrk, once it has run)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def snapshot(groups: Mapping[str, Iterable[int]]) -> dict[str, float]:
    return {name: tree_seconds(roots) for name, roots in groups.items()}


def per_requests(before: Mapping[str, float], after: Mapping[str, float], requests: int) -> dict[str, float]:
    """Each group's CPU seconds per PER requests between two snapshots."""
    if requests <= 0:
        return {name: 0.0 for name in before}
    return {name: round((after[name] - before[name]) * PER / requests, 3) for name in before}
