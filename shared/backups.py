"""Backup archives' names: written by ``qr-manage backup``, read by it and by the management
service's metrics. The name carries the time the dump started, in UTC, so archives sort by time."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

PREFIX = "qr-"
SUFFIX = ".dump"
_STAMP = "%Y%m%dT%H%M%S_%fZ"


def archive_name(moment: datetime) -> str:
    return f"{PREFIX}{moment.astimezone(UTC):{_STAMP}}{SUFFIX}"


def taken_at(path: Path) -> datetime | None:
    """When the archive's dump started, from its name; None for a name that is not ours."""
    name = path.name
    if not (name.startswith(PREFIX) and name.endswith(SUFFIX)):
        return None
    try:
        return datetime.strptime(name[len(PREFIX) : -len(SUFFIX)], _STAMP).replace(tzinfo=UTC)
    except ValueError:
        return None


def list_backups(backup_dir: Path) -> list[Path]:
    """Complete archives, oldest first (their names sort by time)."""
    if not backup_dir.is_dir():
        return []
    return sorted(p for p in backup_dir.iterdir() if taken_at(p) is not None)


def newest_backup(backup_dir: Path) -> tuple[Path, float] | None:
    """The newest complete archive and when it was written (Unix time), or ``None``: what the
    backup schedule counts from and what status and the health check judge."""
    archives = list_backups(backup_dir)
    return (archives[-1], archives[-1].stat().st_mtime) if archives else None
