"""Backups as the ETL sees them: taken under the ETL's lock, lean ones without the derived
tables' rows (``etl.cycle.DERIVED_TABLES``, what ``--full`` rebuilds; the CPA ledger, the
commissions and the audit log are never in it), and a lean restore followed by the full
recompute (which also resets the cursors, so the next incremental cycle starts right).

The dump, the manifest and the restore checks are db/backup.py's; the files, the listing and
the rotation db/backup_files.py's.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import asyncpg
from alembic.script import ScriptDirectory

from db import migrate
from db.backup import BackupError, RestoreReport, create_backup, restore_backup
from db.backup_files import (
    Manifest,
    backup_directory,
    list_backups,
    manifest_path,
    read_manifest,
    rotate,
)
from db.settings import Settings
from etl.cycle import DERIVED_TABLES
from etl.runs import RunResult
from etl.sync import ETL_LOCK_KEY, EtlError, run_cycle

log = logging.getLogger("fature.backup")


@dataclass
class BackupOutcome:
    manifest: Manifest
    path: Path
    removed: list[str]


@dataclass
class Recovery:
    restore: RestoreReport
    rebuild: RunResult | None  # the full recompute after a lean restore
    upgraded_from: str | None = None  # the backup's revision, when older than the code's


async def backup(
    settings: Settings,
    robust_url: str,
    *,
    lean: bool | None = None,
    rotation: bool = True,
    once_a_day: bool = False,
) -> BackupOutcome:
    """One backup of the robust database into ``FATURE_BACKUP_DIR`` (lean per the argument,
    else ``FATURE_BACKUP_LEAN``), under the ETL's lock, then rotation. ``once_a_day`` (the
    scheduled job): raises ``BackupSkipped`` when, once the lock is held, today's backup is
    already in the directory (another process's or machine's)."""
    directory = backup_directory(settings)
    lean = settings.backup_lean if lean is None else lean
    manifest = await create_backup(
        robust_url,
        directory,
        exclude_data=rebuilt_by_full if lean else (),
        bin_dir=settings.backup_pg_bin_dir,
        lock_key=ETL_LOCK_KEY,
        skip_if=(lambda: backed_up_today(settings, datetime.now(UTC))) if once_a_day else None,
    )
    removed = rotate_backups(settings) if rotation else []
    return BackupOutcome(manifest, directory / manifest.file, removed)


# Months the archive job marked offline: a partition of one still attached (a killed
# run) is not rebuilt by --full (etl/cycle.py keeps it), so a lean backup keeps its rows.
_HELD_PARTITIONS = """
SELECT format('%I.%I', n.nspname, c.relname)
FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE i.inhparent = 'public.affiliate_financial_transactions'::regclass
  AND right(c.relname, 6) IN (SELECT to_char(month, 'YYYYMM') FROM etl.archived_months
                              WHERE state <> 'restored')
"""
_TRANSACTIONS = "affiliate_financial_transactions"


async def rebuilt_by_full(conn: asyncpg.Connection) -> list[str]:
    """What a lean backup leaves out, read in its snapshot: what ``--full`` empties and
    rebuilds (``DERIVED_TABLES``), the transactions' partitions of months the archive job
    holds aside."""
    if not await conn.fetchval("SELECT to_regclass('etl.archived_months') IS NOT NULL"):
        return list(DERIVED_TABLES)
    held = {r[0] for r in await conn.fetch(_HELD_PARTITIONS)}
    if not held:
        return list(DERIVED_TABLES)
    partitions = [r[0] for r in await conn.fetch(
        "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_inherits i JOIN pg_class c "
        "ON c.oid = i.inhrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE i.inhparent = 'public.affiliate_financial_transactions'::regclass")]
    return [t for t in DERIVED_TABLES if t != _TRANSACTIONS] + [p for p in partitions if p not in held]


def rotate_backups(settings: Settings) -> list[str]:
    return rotate(
        backup_directory(settings),
        daily=settings.backup_keep_daily,
        weekly=settings.backup_keep_weekly,
        monthly=settings.backup_keep_monthly,
        timezone=settings.timezone,
    )


def backed_up_today(settings: Settings, now: datetime) -> bool:
    """A backup of this local day is already in the directory (another machine's, on shared
    storage): the scheduled job does not take a second one."""
    zone = ZoneInfo(settings.timezone)
    today = now.astimezone(zone).date()
    return any(m.created.astimezone(zone).date() == today for m in list_backups(backup_directory(settings)))


async def restore(
    settings: Settings, dump: Path, robust_url: str, operation_url: str | None
) -> Recovery:
    """Restore ``dump`` into the empty database ``robust_url``; a lean backup is then rebuilt
    by the full recompute from the operation database (which must be reachable)."""
    if manifest_path(dump).is_file():
        manifest = read_manifest(dump)
        if manifest.lean and not operation_url:
            raise BackupError(
                f"{dump.name} is a lean backup: the derived tables are rebuilt from the operation "
                "database after the restore; set FATURE_OPERATION_DATABASE_URL first"
            )
        if manifest.alembic_revision not in known_revisions():
            raise BackupError(
                f"{dump.name} is at revision {manifest.alembic_revision!r}, which this version of "
                "Fature does not know: restore it with the version that took it"
            )
    report = await restore_backup(dump, robust_url, bin_dir=settings.backup_pg_bin_dir)
    upgraded_from = None
    if report.manifest.alembic_revision != migrate.head_revision():
        # checked as it was backed up; now the code's schema, before anything runs on it
        upgraded_from = report.manifest.alembic_revision
        await asyncio.to_thread(migrate.upgrade, robust_url)
    rebuild = None
    if report.rebuild_needed:
        assert operation_url is not None
        log.info("lean backup restored: running the full recompute")
        try:
            rebuild = await run_cycle(settings, robust_url, operation_url, full=True, trigger="restore")
        except EtlError as exc:
            raise BackupError(
                f"restored, but the full recompute of the derived tables failed ({exc}): run "
                "`fature etl run --full` once the operation database is reachable"
            ) from exc
    return Recovery(report, rebuild, upgraded_from)


def known_revisions() -> set[str | None]:
    """Every revision of db/migrations (None: a database without Alembic's table)."""
    script = ScriptDirectory.from_config(migrate.alembic_config("postgresql://x@localhost/x"))
    return {None, *(revision.revision for revision in script.walk_revisions())}
