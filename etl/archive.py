"""Retention of ``affiliate_financial_transactions``: monthly partitions older than
``FATURE_TRANSACTIONS_RETENTION_MONTHS`` go to files, and come back on demand.

A month is archived in steps (``STEPS``), each recorded in ``etl.archived_months.state`` and
each idempotent, so a run killed at any point is finished by the next one:

1. ``mark``: the month is ``detaching``; from now on the ETL neither writes nor recreates it.
2. ``detach``: ``DETACH PARTITION ... CONCURRENTLY`` (readers are not blocked); a detach left
   half done by a crash (``pg_inherits.inhdetachpending``) is completed with ``FINALIZE``.
3. ``write``: ``COPY`` of the detached table as CSV, streamed through gzip into ``<file>.part``,
   fsynced, renamed, the directory fsynced; then the manifest (rows, rows and sum of amounts per
   type, the file's sha256) the same way.
4. ``verify``: the file is read back (sha256, rows and per-type sums) and compared with the
   manifest and with the table itself.
5. ``drop``: only now is the table dropped; the month is ``archived``.

The job and restores take the ETL's advisory lock (``etl.sync.ETL_LOCK_KEY``): they never run
beside a cycle. A restored month is an ordinary online month again (the ETL maintains it) and
stays online until ``keep_until`` (``FATURE_ARCHIVE_RESTORE_KEEP_DAYS``, or ``fature archive
drop``); the next run after that archives it again, replacing its file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import asyncpg

from db import clock
from db.engine import connect
from db.settings import Settings
from etl import archive_files as files
from etl import transactions
from etl.sync import ETL_LOCK_KEY, EtlBusy, EtlError

log = logging.getLogger("fature.archive")

PARENT = "affiliate_financial_transactions"
STEPS = ("mark", "detach", "write", "verify", "drop")
MANIFEST_FORMAT = "fature-transactions-archive/1"
# The state each step leaves a month in; a month resumes at the step after its state.
_STATE_AFTER = dict(zip(STEPS, ("detaching", "detached", "written", "verified", "archived"), strict=True))
_IN_PROGRESS = ("detaching", "detached", "written", "verified")

# The months clients cannot read online: archived, or on their way (not restored ones).
OFFLINE_MONTHS = transactions.OFFLINE_MONTHS
# The last successful archive job run (``finished_at``, ``age_s``); no row before the first.
LAST_SUCCESS = (
    "SELECT id, finished_at, months, extract(epoch FROM now() - finished_at)::float AS age_s "
    "FROM etl.archive_runs WHERE kind = 'archive' AND status = 'success' "
    "ORDER BY finished_at DESC LIMIT 1"
)


class ArchiveError(EtlError):
    """The archive job or a restore failed; the message is one clear line."""


@dataclass
class ArchiveResult:
    run_id: int
    months: list[date] = field(default_factory=list)
    month_seconds: dict[str, float] = field(default_factory=dict)


def partition_name(month: date) -> str:
    return f"{PARENT}_p{month:%Y%m}"


def next_month(month: date) -> date:
    return date(month.year + (month.month == 12), month.month % 12 + 1, 1)


def cutoff(settings: Settings) -> date:
    """The first month kept online: the current local month and the ones before it,
    ``transactions_retention_months`` in all."""
    today = clock.local_today(settings.timezone)
    index = today.year * 12 + today.month - 1 - (settings.transactions_retention_months - 1)
    return date(index // 12, index % 12 + 1, 1)


def archive_dir(settings: Settings) -> Path:
    return settings.archive_dir or settings.data_dir / "archive"


def parse_month(text: str) -> date:
    """``YYYY-MM`` as the month's first day; ValueError with a clear message otherwise."""
    try:
        year, month = (int(part) for part in text.split("-"))
        return date(year, month, 1)
    except ValueError:
        raise ValueError(f"not a month: {text!r} (expected YYYY-MM)") from None


# ---------------------------------------------------------------------------- the job


async def run_archive(settings: Settings, robust_url: str, *, trigger: str = "cli",
                      drop: date | None = None) -> ArchiveResult:
    """Archive every month older than the retention (and finish any month a killed run left
    half done). ``drop``: archive that restored month now instead (``fature archive drop``).
    Raises EtlBusy when an ETL cycle holds the lock, ArchiveError on failure."""
    async with _locked(settings, robust_url, "drop" if drop else "archive", trigger) as (conn, run_id):
        result = ArchiveResult(run_id=run_id)
        if drop is not None:
            state = await conn.fetchval("SELECT state FROM etl.archived_months WHERE month = $1", drop)
            if state != "restored":
                raise ArchiveError(f"{drop:%Y-%m} is not a restored month (state: {state or 'online'})")
            await conn.execute("UPDATE etl.archived_months SET keep_until = now() WHERE month = $1", drop)
            months = [drop]
        else:
            months = await _due_months(conn, settings)
        for month in months:
            started = time.perf_counter()
            await _archive_month(conn, settings, month)
            result.months.append(month)
            result.month_seconds[f"{month:%Y-%m}"] = round(time.perf_counter() - started, 3)
        await conn.execute("UPDATE etl.archive_runs SET months = $2 WHERE id = $1", run_id, months)
        return result


async def _due_months(conn: asyncpg.Connection, settings: Settings) -> list[date]:
    """Months half done by a killed run, then online partitions older than the cutoff (a
    restored month only once its ``keep_until`` has passed)."""
    unfinished = [r[0] for r in await conn.fetch(
        "SELECT month FROM etl.archived_months WHERE state = ANY($1::text[])", list(_IN_PROGRESS))]
    online = [
        date(int(r[0][-6:-2]), int(r[0][-2:]), 1)
        for r in await conn.fetch(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = $1::regclass AND NOT i.inhdetachpending", PARENT)
        if r[0][-7:-6] == "p" and r[0][-6:].isdigit()
    ]
    kept = {r[0] for r in await conn.fetch(
        "SELECT month FROM etl.archived_months WHERE state = 'restored' AND keep_until > now()")}
    first_online = cutoff(settings)
    due = {m for m in online if m < first_online and m not in kept}
    # Half-done months first: a partition left "detach pending" is finalized before another
    # detach starts.
    return sorted(unfinished) + sorted(due - set(unfinished))


async def _archive_month(conn: asyncpg.Connection, settings: Settings, month: date) -> None:
    state = await conn.fetchval("SELECT state FROM etl.archived_months WHERE month = $1", month)
    start = 0 if state in (None, "restored") else STEPS.index(_step_leading_to(state)) + 1
    for step in STEPS[start:]:
        await _STEP_RUNNERS[step](conn, settings, month)
        await conn.execute("UPDATE etl.archived_months SET state = $2 WHERE month = $1",
                           month, _STATE_AFTER[step])
        log.info("archive %s: %s done", f"{month:%Y-%m}", step)
        if settings.archive_fail_after == step:
            os._exit(99)  # the kill test: a real death, no cleanup, no finally


def _step_leading_to(state: str) -> str:
    return next(step for step, after in _STATE_AFTER.items() if after == state)


async def _mark(conn: asyncpg.Connection, settings: Settings, month: date) -> None:
    await conn.execute(
        "INSERT INTO etl.archived_months (month, state) VALUES ($1, 'detaching') "
        "ON CONFLICT (month) DO UPDATE SET state = 'detaching', started_at = now()", month)


async def _detach(conn: asyncpg.Connection, settings: Settings, month: date) -> None:
    name = partition_name(month)
    pending = await conn.fetchval(
        "SELECT i.inhdetachpending FROM pg_inherits i "
        "WHERE i.inhrelid = to_regclass($1) AND i.inhparent = $2::regclass", name, PARENT)
    if pending is None:
        if await conn.fetchval("SELECT to_regclass($1)", name) is None:
            raise ArchiveError(f"{month:%Y-%m}: the partition {name} is missing")
        return  # detached already
    # Each runs outside a transaction block (asyncpg's simple execute): CONCURRENTLY needs it.
    how = "FINALIZE" if pending else "CONCURRENTLY"
    await conn.execute(f"ALTER TABLE {PARENT} DETACH PARTITION {name} {how}")


async def _write(conn: asyncpg.Connection, settings: Settings, month: date) -> None:
    name = partition_name(month)
    folder = archive_dir(settings).resolve()  # on record as an absolute path
    folder.mkdir(parents=True, exist_ok=True)
    columns = await _columns(conn, name)
    path = folder / f"{PARENT}-{month:%Y-%m}.csv.gz"
    with files.gzip_writer(path) as write:
        async def sink(chunk: bytes) -> None:
            write(chunk)

        await conn.copy_from_query(f"SELECT {', '.join(columns)} FROM {name} ORDER BY id",
                                   output=sink, format="csv", header=True)
    rows, sums = await _table_sums(conn, name)
    manifest = {
        "format": MANIFEST_FORMAT, "table": PARENT, "month": f"{month:%Y-%m}",
        "from": month.isoformat(), "to": next_month(month).isoformat(),
        "time_zone": settings.timezone, "file": path.name, "compression": "gzip",
        "content": "csv with a header line", "columns": columns, "rows": rows, "sums": sums,
        "sha256": files.sha256_of(path), "archived_at": clock.now().isoformat(),
    }
    text = json.dumps(manifest, indent=2).encode()
    files.write_durably(files.manifest_path(path), text)
    await conn.execute(
        "UPDATE etl.archived_months SET file = $2, file_sha256 = $3, manifest_sha256 = $4, "
        "rows = $5, sums = $6::jsonb WHERE month = $1",
        month, str(path), manifest["sha256"], hashlib.sha256(text).hexdigest(), rows, json.dumps(sums))


async def _verify(conn: asyncpg.Connection, settings: Settings, month: date) -> None:
    manifest = await verified_manifest(conn, month)
    rows, sums = await _table_sums(conn, partition_name(month))
    if (rows, sums) != (manifest["rows"], manifest["sums"]):
        raise ArchiveError(f"{month:%Y-%m}: the table no longer matches its manifest; not dropped")


async def _drop(conn: asyncpg.Connection, settings: Settings, month: date) -> None:
    await conn.execute(f"DROP TABLE IF EXISTS {partition_name(month)}")
    await conn.execute("UPDATE etl.archived_months SET archived_at = now() WHERE month = $1", month)


_STEP_RUNNERS = {"mark": _mark, "detach": _detach, "write": _write, "verify": _verify, "drop": _drop}


# ---------------------------------------------------------------------------- checks


async def verified_manifest(conn: asyncpg.Connection, month: date) -> dict[str, Any]:
    """The month's manifest after reading its file back (``archive_files.checked_manifest``);
    ArchiveError naming the difference otherwise."""
    row = await conn.fetchrow(
        "SELECT file, file_sha256, manifest_sha256 FROM etl.archived_months WHERE month = $1", month)
    if row is None or row["file"] is None:
        raise ArchiveError(f"{month:%Y-%m} has no archive file on record")
    path = Path(row["file"])
    try:
        return files.checked_manifest(path, manifest_sha256=row["manifest_sha256"],
                                      file_sha256=row["file_sha256"])
    except files.FileMismatch as exc:
        raise ArchiveError(f"{month:%Y-%m} ({path}): {exc}") from exc
    except OSError as exc:
        raise ArchiveError(f"{month:%Y-%m} ({path}): cannot read the archive ({exc.strerror})") from exc


async def _table_sums(conn: asyncpg.Connection, table: str) -> files.Sums:
    rows = await conn.fetch(
        f"SELECT transaction_type, count(*) AS n, sum(amount) AS amount FROM {table} "
        "GROUP BY 1 ORDER BY 1")
    # Through Decimal's str, as the file's sums are, so both compare as text.
    sums = {r["transaction_type"]: {"rows": r["n"], "amount": str(r["amount"])} for r in rows}
    return sum(r["n"] for r in rows), sums


async def _columns(conn: asyncpg.Connection, table: str) -> list[str]:
    return [r[0] for r in await conn.fetch(
        "SELECT attname FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 "
        "AND NOT attisdropped ORDER BY attnum", table)]


# ---------------------------------------------------------------------------- restore


async def restore_month(settings: Settings, robust_url: str, month: date, *,
                        trigger: str = "cli") -> int:
    """Bring an archived month back online from its verified file, in one transaction (a
    crash restores nothing); returns its rows. It stays online until ``keep_until``."""
    async with _locked(settings, robust_url, "restore", trigger) as (conn, run_id):
        state = await conn.fetchval("SELECT state FROM etl.archived_months WHERE month = $1", month)
        if state != "archived":
            hint = {None: "it was never archived", "restored": "it is online already"}.get(
                state, "its archiving is unfinished: run `fature archive run` first")
            raise ArchiveError(f"{month:%Y-%m} cannot be restored: {hint}")
        manifest = await verified_manifest(conn, month)
        path = Path(await conn.fetchval("SELECT file FROM etl.archived_months WHERE month = $1", month))
        name, columns = partition_name(month), manifest["columns"]
        low, high = month.isoformat(), next_month(month).isoformat()
        async with conn.transaction():
            await conn.execute(
                f"CREATE TABLE {name} (LIKE {PARENT} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
            await conn.copy_to_table(name, source=files.decompressed(path), columns=columns,
                                     format="csv", header=True)
            if await _table_sums(conn, name) != (manifest["rows"], manifest["sums"]):
                raise ArchiveError(f"{month:%Y-%m}: the restored rows differ from the manifest")
            # The bound as a constraint first: ATTACH then skips its scan of the table.
            await conn.execute(
                f"ALTER TABLE {name} ADD CONSTRAINT {name}_bound CHECK (transaction_date IS NOT NULL "
                f"AND transaction_date >= '{low}' AND transaction_date < '{high}')")
            await conn.execute(
                f"ALTER TABLE {PARENT} ATTACH PARTITION {name} FOR VALUES FROM ('{low}') TO ('{high}')")
            await conn.execute(f"ALTER TABLE {name} DROP CONSTRAINT {name}_bound")
            await conn.execute(
                "UPDATE etl.archived_months SET state = 'restored', restored_at = now(), "
                "keep_until = now() + make_interval(days => $2) WHERE month = $1",
                month, settings.archive_restore_keep_days)
            await conn.execute("UPDATE etl.archive_runs SET months = $2 WHERE id = $1", run_id, [month])
        await conn.execute(f"ANALYZE {name}")
        return int(manifest["rows"])


# ---------------------------------------------------------------------------- runs, reads


class _locked:
    """The ETL lock and an ``etl.archive_runs`` row around one job: (connection, run id)."""

    def __init__(self, settings: Settings, url: str, kind: str, trigger: str) -> None:
        self.settings, self.url, self.kind, self.trigger = settings, url, kind, trigger

    async def __aenter__(self) -> tuple[asyncpg.Connection, int]:
        self.conn = conn = await connect(self.url)
        await conn.execute("SELECT set_config('TimeZone', $1, false)", self.settings.timezone)
        if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", ETL_LOCK_KEY):
            await conn.execute(
                "INSERT INTO etl.archive_runs (kind, trigger, status, finished_at, error) "
                "VALUES ($1, $2, 'skipped', clock_timestamp(), 'an ETL cycle held the lock')",
                self.kind, self.trigger)
            await conn.close()
            raise EtlBusy("an ETL cycle (or another archive job) is running; this one was skipped")
        # We hold the lock: a run still marked running was abandoned by a dead process.
        await conn.execute(
            "UPDATE etl.archive_runs SET status = 'failed', finished_at = clock_timestamp(), "
            "error = 'abandoned (the process stopped mid-run)' WHERE status = 'running'")
        self.run_id = await conn.fetchval(
            "INSERT INTO etl.archive_runs (kind, trigger, status) VALUES ($1, $2, 'running') "
            "RETURNING id", self.kind, self.trigger)
        return conn, self.run_id

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: object) -> None:
        conn = self.conn
        try:
            if exc is None:
                await conn.execute("UPDATE etl.archive_runs SET status = 'success', "
                                   "finished_at = clock_timestamp() WHERE id = $1", self.run_id)
            else:
                await conn.execute("UPDATE etl.archive_runs SET status = 'failed', "
                                   "finished_at = clock_timestamp(), error = $2 WHERE id = $1",
                                   self.run_id, str(exc)[:2000])
            await conn.execute("SELECT pg_advisory_unlock($1)", ETL_LOCK_KEY)
        finally:
            await conn.close()
        if isinstance(exc, asyncpg.PostgresError):
            raise ArchiveError(f"archive {self.kind} failed: {str(exc).splitlines()[0]}") from exc


async def archived_months(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """Every month on record, oldest first (``fature archive list``)."""
    return list(await conn.fetch(
        "SELECT month, state, file, rows, archived_at, restored_at, keep_until "
        "FROM etl.archived_months ORDER BY month"))


async def last_success(conn: asyncpg.Connection) -> asyncpg.Record | None:
    """The last successful archive job run (``LAST_SUCCESS``), or None."""
    return await conn.fetchrow(LAST_SUCCESS)


async def offline_months(conn: asyncpg.Connection) -> list[date]:
    """Months the ETL must not write and clients cannot read online (``OFFLINE_MONTHS``)."""
    return [r[0] for r in await conn.fetch(OFFLINE_MONTHS)]


async def status_line(settings: Settings, robust_url: str) -> str:
    """``fature etl status``'s line: the last successful archive run and the months offline."""
    conn = await connect(robust_url)
    try:
        last = await last_success(conn)
        offline = await offline_months(conn)
    finally:
        await conn.close()
    when = (f"last successful run {last['finished_at']:%Y-%m-%d %H:%M:%S%z} "
            f"({last['age_s']:.0f} s ago)" if last else "no successful run yet")
    months = f"{offline[0]:%Y-%m}..{offline[-1]:%Y-%m} ({len(offline)})" if offline else "none"
    return (f"transactions archive: {when}; months archived: {months}; online from "
            f"{cutoff(settings):%Y-%m} (FATURE_TRANSACTIONS_RETENTION_MONTHS="
            f"{settings.transactions_retention_months})")
