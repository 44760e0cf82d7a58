"""The backup directory: one dump and one manifest per backup, and rotation.

A backup is ``fature-<UTC stamp>[-lean].dump`` (pg_dump custom format) with
``fature-<UTC stamp>[-lean].json`` beside it. The manifest is written last (after the dump
is synced and verified), so a dump without a manifest is an unfinished backup, and the newest
manifest of the directory is the last successful backup: no table records backup runs, and
the directory can live on shared storage for every machine running the worker.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from db.settings import Settings

MANIFEST_FORMAT = 1
_CHUNK = 1024 * 1024


@dataclass
class Manifest:
    """What a backup holds; read in the dump's own snapshot (revision, cursors, row counts)."""

    file: str
    sha256: str
    size_bytes: int
    created_at: str  # ISO 8601, UTC: when the snapshot was taken
    alembic_revision: str | None
    server_version_num: int
    pg_dump_version: str
    cursors: dict[str, str | None]
    row_counts: dict[str, int]
    lean: bool = False
    data_excluded: list[str] = field(default_factory=list)
    duration_s: float = 0.0
    format: int = MANIFEST_FORMAT

    @property
    def created(self) -> datetime:
        return datetime.fromisoformat(self.created_at)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        data: dict[str, Any] = json.loads(text)
        known = set(cls.__dataclass_fields__)
        return cls(**{key: value for key, value in data.items() if key in known})


def backup_directory(settings: Settings) -> Path:
    """``FATURE_BACKUP_DIR``, or ``backups/`` in the data dir."""
    return (settings.backup_dir or settings.data_dir / "backups").expanduser()


def manifest_path(dump: Path) -> Path:
    return dump.with_suffix(".json")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def fsync_path(path: Path) -> None:
    """Flush a file (or a directory entry) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_manifest(directory: Path, manifest: Manifest) -> Path:
    """Write the manifest atomically (temp file, fsync, rename, fsync of the directory)."""
    target = directory / Path(manifest.file).with_suffix(".json").name
    partial = target.with_suffix(".json.partial")
    partial.write_text(manifest.to_json())
    fsync_path(partial)
    partial.replace(target)
    fsync_path(directory)
    return target


def read_manifest(dump: Path) -> Manifest:
    return Manifest.from_json(manifest_path(dump).read_text())


def list_backups(directory: Path) -> list[Manifest]:
    """The finished backups of ``directory`` (a manifest whose dump is there), oldest first."""
    if not directory.is_dir():
        return []
    found = []
    for path in directory.glob("fature-*.json"):
        try:
            manifest = Manifest.from_json(path.read_text())
        except (OSError, ValueError, TypeError):
            continue  # a foreign or damaged file is not a backup
        if (directory / manifest.file).is_file():
            found.append(manifest)
    return sorted(found, key=lambda m: (m.created, m.file))


def last_backup(directory: Path) -> Manifest | None:
    """The last successful backup, or None."""
    backups = list_backups(directory)
    return backups[-1] if backups else None


def _bucket_keys(day: date) -> dict[str, tuple[int, ...]]:
    iso = day.isocalendar()
    return {"daily": (day.toordinal(),), "weekly": (iso.year, iso.week), "monthly": (day.year, day.month)}


def backups_to_keep(
    backups: Iterable[Manifest], *, daily: int, weekly: int, monthly: int, timezone: str
) -> set[str]:
    """The files rotation keeps: the newest backup of each of the last ``daily`` local days
    that have one, of each of the last ``weekly`` ISO weeks, and of each of the last
    ``monthly`` months (restic's ``--keep-daily/weekly/monthly``); the newest backup always."""
    zone = ZoneInfo(timezone)
    newest_first = sorted(backups, key=lambda m: (m.created, m.file), reverse=True)
    keep: set[str] = set()
    if newest_first:
        keep.add(newest_first[0].file)
    for policy, count in (("daily", daily), ("weekly", weekly), ("monthly", monthly)):
        seen: list[tuple[int, ...]] = []
        for manifest in newest_first:
            if len(seen) >= count:
                break
            key = _bucket_keys(manifest.created.astimezone(zone).date())[policy]
            if key not in seen:
                seen.append(key)
                keep.add(manifest.file)
    return keep


def rotate(directory: Path, *, daily: int, weekly: int, monthly: int, timezone: str) -> list[str]:
    """Delete the backups the policy does not keep (dump first, then its manifest, so a crash
    leaves at worst a manifest without its dump, which is not a backup); their file names."""
    backups = list_backups(directory)
    keep = backups_to_keep(backups, daily=daily, weekly=weekly, monthly=monthly, timezone=timezone)
    removed = []
    for manifest in backups:
        if manifest.file not in keep:
            dump = directory / manifest.file
            dump.unlink(missing_ok=True)
            manifest_path(dump).unlink(missing_ok=True)
            removed.append(manifest.file)
    return removed
