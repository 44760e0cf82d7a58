"""APScheduler jobs, inside the API process or a standalone worker (`fature etl worker`): the
ETL cycles and the monthly commission close.

- incremental cycle every ``FATURE_ETL_INTERVAL_MINUTES`` (default 15);
- daily finalisation at ``FATURE_ETL_DAILY_AT`` local time (00:30): a cycle right after the
  day closes, so yesterday's rows are final; weekly (Monday) and monthly (1st) roll-ups the
  same way (every period is maintained incrementally on every cycle, so a roll-up is a cycle
  at the boundary, not a separate computation);
- the full recompute on ``FATURE_ETL_FULL_DAY_OF_WEEK`` at ``FATURE_ETL_FULL_AT`` (Sunday 03:00);
- the daily backup at ``FATURE_BACKUP_TIME`` (03:30) with its rotation (``FATURE_BACKUP_ENABLED``);
- the transactions archive (etl/archive.py) daily at ``FATURE_ARCHIVE_AT`` (04:30).
Every job has max_instances=1, coalescing and a misfire grace time; the advisory lock makes
sure only one cycle runs across processes (a busy cycle is skipped, not queued). In a cluster
the one scheduler is ``fature etl worker`` under the leader lock (jobs/leader.py) and the API
processes run none (``FATURE_ETL_SCHEDULER_ENABLED=false``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from commissions.service import close_previous_month
from db.backup import BackupSkipped
from db.settings import Settings
from etl.archive import run_archive
from etl.backups import backed_up_today, backup
from etl.sync import EtlBusy, EtlError, run_cycle

log = logging.getLogger("fature.jobs")


def _hour_minute(text: str) -> tuple[int, int]:
    hour, _, minute = text.partition(":")
    return int(hour), int(minute or 0)


@dataclass
class EtlScheduler:
    scheduler: AsyncIOScheduler

    async def shutdown(self) -> None:
        self.scheduler.shutdown(wait=False)

    def jobs(self) -> list[str]:
        return [job.id for job in self.scheduler.get_jobs()]


def build_scheduler(settings: Settings, robust_url: str, operation_url: str, *,
                    catch_up: bool = False) -> AsyncIOScheduler:
    """The scheduler with every ETL job, not started. ``catch_up``: the incremental cycle runs
    at once, then every interval (a worker taking over from a dead leader catches up)."""

    async def cycle(full: bool, trigger: str) -> None:
        try:
            result = await run_cycle(settings, robust_url, operation_url, full=full, trigger=trigger)
            log.info("scheduled %s cycle done in %.2fs", result.mode, result.duration_s)
        except EtlBusy:
            log.info("scheduled %s cycle skipped: another cycle is running", trigger)
        except EtlError as exc:
            log.error("scheduled %s cycle failed: %s", trigger, exc)

    tz = settings.timezone
    common = {
        "max_instances": 1,
        "coalesce": True,
        "misfire_grace_time": settings.etl_misfire_grace_seconds,
    }
    scheduler = AsyncIOScheduler(timezone=tz)
    scheduler.add_job(
        cycle,
        IntervalTrigger(minutes=settings.etl_interval_minutes),
        args=(False, "interval"),
        id="etl-incremental",
        **({"next_run_time": datetime.now(UTC)} if catch_up else {}),
        **common,
    )
    hour, minute = _hour_minute(settings.etl_daily_at)
    scheduler.add_job(
        cycle,
        CronTrigger(hour=hour, minute=minute, timezone=tz),
        args=(False, "daily"),
        id="etl-daily",
        **common,
    )
    scheduler.add_job(
        cycle,
        CronTrigger(day_of_week="mon", hour=hour, minute=minute + 5 if minute < 55 else minute, timezone=tz),
        args=(False, "weekly"),
        id="etl-weekly",
        **common,
    )
    scheduler.add_job(
        cycle,
        CronTrigger(day=1, hour=hour, minute=minute + 10 if minute < 50 else minute, timezone=tz),
        args=(False, "monthly"),
        id="etl-monthly",
        **common,
    )
    close_hour, close_minute = _hour_minute(settings.commission_close_at)

    async def close_month() -> None:
        try:
            await close_previous_month(robust_url, tz)
        except Exception:  # a failed close is retried next month-day run; never kill the loop
            log.exception("closing the previous month failed")

    scheduler.add_job(close_month, CronTrigger(day=settings.commission_close_day, hour=close_hour,
                                               minute=close_minute, timezone=tz),
                      id="commission-close", **common)
    if settings.backup_enabled:
        backup_hour, backup_minute = _hour_minute(settings.backup_time)
        scheduler.add_job(scheduled_backup, CronTrigger(hour=backup_hour, minute=backup_minute, timezone=tz),
                          args=(settings, robust_url), id="backup", **common)

    async def archive_transactions() -> None:
        # Under the ETL's lock: skipped (and retried the next day) while a cycle runs.
        try:
            result = await run_archive(settings, robust_url, trigger="scheduled")
            log.info("transactions archive done: %d month(s)", len(result.months))
        except EtlBusy:
            log.info("transactions archive skipped: an ETL cycle is running")
        except EtlError as exc:
            log.error("transactions archive failed: %s", exc)

    archive_hour, archive_minute = _hour_minute(settings.archive_at)
    scheduler.add_job(archive_transactions, CronTrigger(hour=archive_hour, minute=archive_minute,
                                                        timezone=tz),
                      id="transactions-archive", **common)
    full_hour, full_minute = _hour_minute(settings.etl_full_at)
    scheduler.add_job(
        cycle,
        CronTrigger(
            day_of_week=settings.etl_full_day_of_week,
            hour=full_hour,
            minute=full_minute,
            timezone=tz,
        ),
        args=(True, "full"),
        id="etl-full",
        **common,
    )
    return scheduler


async def scheduled_backup(settings: Settings, robust_url: str) -> None:
    """The daily backup (etl/backups.py), unless this local day already has one (another
    machine's, when FATURE_BACKUP_DIR is shared storage); failures are logged, never raised."""
    try:
        if backed_up_today(settings, datetime.now(UTC)):
            log.info("scheduled backup skipped: today's backup is already there")
            return
        # asked again under the lock: processes that waited for one another take one backup
        outcome = await backup(settings, robust_url, once_a_day=True)
        log.info("scheduled backup %s: %d bytes in %.2fs; rotation removed %d",
                 outcome.manifest.file, outcome.manifest.size_bytes, outcome.manifest.duration_s,
                 len(outcome.removed))
    except BackupSkipped:
        log.info("scheduled backup skipped: another process took today's backup meanwhile")
    except Exception as exc:  # a failed backup is retried tomorrow; /readyz can watch its age
        log.error("scheduled backup failed: %s", exc)


def start_scheduler(settings: Settings, robust_url: str, operation_url: str, *,
                    catch_up: bool = False) -> EtlScheduler:
    """Start the ETL jobs on the running event loop (``catch_up``: see build_scheduler)."""
    scheduler = build_scheduler(settings, robust_url, operation_url, catch_up=catch_up)
    scheduler.start()
    log.info("ETL scheduler started: %s", ", ".join(j.id for j in scheduler.get_jobs()))
    return EtlScheduler(scheduler)
