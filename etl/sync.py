"""One ETL cycle: extract, mirror, network, activity, validation, accrual, publish.

All of it runs in ONE transaction of the robust database, with the cursors advanced in that
same transaction: a crash, a kill or a source that drops mid-run leaves the robust database
exactly as it was. A session advisory lock makes sure only one cycle runs at a time across
processes; a second one is told so and skips.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

import asyncpg

from db.engine import DatabaseUnavailable, connect, describe
from db.settings import Settings, masked_url
from etl import (
    accrual,
    activity,
    events,
    extract,
    mirror,
    network,
    publish,
    transactions,
    validation,
)

log = logging.getLogger("fature.etl")

# NOTIFY channel carrying the id of every committed run (for other processes' caches).
COMMIT_CHANNEL = "fature_etl_committed"

# pg advisory lock key shared by every process that writes the ledger or the aggregates.
ETL_LOCK_KEY = 0x4641545552450001

STEPS = (
    "extract",
    "mirror",
    "network",
    "activity",
    "validation",
    "accrual",
    "publish",
    "transactions",
    "commit",
)

# Derived state a full recompute rebuilds from the source; the ledger is never in it.
_DERIVED = (
    "affiliate_periodic_summaries",
    "affiliate_financial_transactions",
    "affiliate_referrals",
    "affiliate_mlm_structure",
    "affiliates",
    "affiliate_rank_values",
    "etl.affiliate_level_periods",
    "etl.user_daily",
    "etl.user_upline",
    "etl.edges",
    "etl.src_bets",
    "etl.src_saque",
    "etl.src_depositos",
    "etl.src_tracked",
    "etl.src_cadastro",
    "etl.mirror_loaded",
)


class EtlError(RuntimeError):
    """A cycle failed; nothing it did is visible. The message is one clear line."""


class EtlBusy(EtlError):
    """Another cycle holds the lock."""


class InjectedFailure(RuntimeError):
    """Raised by the ``fail_after`` test hook."""


@dataclass
class RunResult:
    run_id: int
    mode: str
    status: str
    rows_read: dict[str, int] = field(default_factory=dict)
    rows_written: dict[str, int] = field(default_factory=dict)
    affiliates_touched: int = 0
    anomalies: int = 0
    users_moved: int = 0
    validations: int = 0
    duration_s: float = 0.0
    source_as_of: datetime | None = None
    touched_affiliate_ids: list[int] = field(default_factory=list)
    new_validation_ids: list[int] = field(default_factory=list)
    step_seconds: dict[str, float] = field(default_factory=dict)


Progress = Callable[[str, int, int], None]


async def run_cycle(
    settings: Settings,
    robust_url: str,
    operation_url: str,
    *,
    full: bool = False,
    trigger: str = "cli",
    progress: Progress | None = None,
    fail_after: str | None = None,
    validate_network_of: int | None = None,
) -> RunResult:
    """Run one cycle now. Raises EtlBusy when another holds the lock, EtlError on failure.

    ``validate_network_of``: also reconsider every unvalidated user of that affiliate's
    network for CPA (the on-demand validation of the API), in the same cycle.
    """
    mode = "full" if full else ("validate" if validate_network_of is not None else "incremental")
    conn = await connect(robust_url)
    try:
        if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", ETL_LOCK_KEY):
            await _record_skip(conn, mode, trigger)
            raise EtlBusy("another ETL cycle is running; this one was skipped")
        try:
            return await _locked_cycle(
                conn,
                settings,
                operation_url,
                mode,
                trigger,
                progress,
                fail_after,
                validate_network_of,
            )
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", ETL_LOCK_KEY)
    finally:
        await conn.close()


async def _record_skip(conn: asyncpg.Connection, mode: str, trigger: str) -> None:
    await conn.execute(
        "INSERT INTO etl.runs (mode, trigger, status, finished_at, error) "
        "VALUES ($1, $2, 'skipped', clock_timestamp(), 'another cycle held the lock')",
        mode,
        trigger,
    )


async def _locked_cycle(
    conn: asyncpg.Connection,
    settings: Settings,
    operation_url: str,
    mode: str,
    trigger: str,
    progress: Progress | None,
    fail_after: str | None,
    validate_network_of: int | None,
) -> RunResult:
    # We hold the lock: a run still marked running was abandoned by a dead process.
    await conn.execute(
        "UPDATE etl.runs SET status = 'failed', finished_at = clock_timestamp(), "
        "error = 'abandoned (the process stopped mid-run; nothing of it was committed)' "
        "WHERE status = 'running'"
    )
    run_id = await conn.fetchval(
        "INSERT INTO etl.runs (mode, trigger, status) VALUES ($1, $2, 'running') RETURNING id",
        mode,
        trigger,
    )
    result = RunResult(run_id=run_id, mode=mode, status="running")
    started = time.perf_counter()
    try:
        source = await connect(operation_url)
    except DatabaseUnavailable as exc:
        await _record_failure(conn, run_id, str(exc))
        raise EtlError(str(exc)) from exc
    try:
        async with conn.transaction():
            await _cycle(conn, source, settings, result, progress, fail_after, validate_network_of)
    except InjectedFailure:
        await _record_failure(conn, run_id, f"injected failure after {fail_after}")
        raise
    except (asyncpg.PostgresError, OSError, asyncpg.InterfaceError) as exc:
        message = f"ETL cycle failed: {describe(exc)}"
        if isinstance(exc, OSError | asyncpg.InterfaceError | asyncpg.ConnectionDoesNotExistError):
            message = f"ETL cycle failed: lost a database connection ({describe(exc)})"
        await _record_failure(conn, run_id, message)
        raise EtlError(message) from exc
    finally:
        await source.close()
    result.status = "success"
    result.duration_s = time.perf_counter() - started
    log.info(
        "etl cycle committed",
        extra={"run_id": run_id, "mode": mode, "duration_s": round(result.duration_s, 3)},
    )
    events.publish(
        events.EtlCommitted(
            run_id=run_id,
            mode=mode,
            source_as_of=result.source_as_of,
            affiliate_ids=frozenset(result.touched_affiliate_ids),
        )
    )
    return result


# Anything a cycle has to derive: a change set of the mirror step, or a plan version or
# assignment made since the last successful cycle that may already be in force (re-rating).
_ANYTHING_TO_DERIVE = f"""
SELECT EXISTS (SELECT 1 FROM tree_roots) OR EXISTS (SELECT 1 FROM aff_ud)
    OR EXISTS (SELECT 1 FROM chg_profile) OR EXISTS (SELECT 1 FROM chg_money)
    OR ({accrual.RERATE_FROM}) IS NOT NULL
"""


async def _nothing_to_derive(conn: asyncpg.Connection) -> bool:
    return not await conn.fetchval(_ANYTHING_TO_DERIVE)


async def _record_failure(conn: asyncpg.Connection, run_id: int, message: str) -> None:
    try:
        await conn.execute(
            "UPDATE etl.runs SET status = 'failed', finished_at = clock_timestamp(), error = $2 "
            "WHERE id = $1",
            run_id,
            message[:2000],
        )
    except (asyncpg.PostgresError, OSError, asyncpg.InterfaceError):
        log.warning("could not record the failed run %s", run_id)


async def _cycle(
    conn: asyncpg.Connection,
    source: asyncpg.Connection,
    settings: Settings,
    result: RunResult,
    progress: Progress | None,
    fail_after: str | None,
    validate_network_of: int | None = None,
) -> None:
    full = result.mode == "full"
    total = len(STEPS)

    last = time.perf_counter()

    def step(name: str) -> None:
        nonlocal last
        now = time.perf_counter()
        result.step_seconds[name] = round(now - last, 3)
        last = now
        if progress:
            progress(name, STEPS.index(name) + 1, total)
        if fail_after == name:
            raise InjectedFailure(name)

    await conn.execute("SELECT set_config('TimeZone', $1, true)", settings.timezone)
    await conn.execute("SET LOCAL work_mem = '256MB'")
    cursors = {
        r["source_table"]: r["cursor_ts"]
        for r in await conn.fetch("SELECT source_table, cursor_ts FROM etl.sync_cursors")
    }
    if not full and all(cursor is None for cursor in cursors.values()):
        # Nothing was ever loaded: the first load is a full load (set-based, not per pair).
        full = True
        result.mode = "full"
    elif not full and not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM etl.mirror_loaded)"):
        # The unlogged mirrors were emptied by crash recovery (or this is a promoted replica
        # or a restored backup): only a full load can rebuild them (migration 0005).
        log.warning("the ETL's mirrors of the source are empty (crash recovery?): running a full load")
        full = True
        result.mode = "full"
    if full:
        await conn.execute(f"TRUNCATE {', '.join(_DERIVED)}")
        await conn.execute("UPDATE etl.sync_cursors SET cursor_ts = NULL")
        cursors = dict.fromkeys(cursors)
    direct = {}
    if full:
        # Millions of bets go straight into their emptied mirror, not through staging.
        await mirror.prepare_bulk_bets(conn)
        direct = {"casino_bets_v": "etl.src_bets"}
    extracted = await extract.extract(
        source, conn, cursors, timedelta(minutes=settings.etl_overlap_minutes), direct
    )
    result.rows_read = extracted.rows
    result.source_as_of = extracted.source_as_of
    step("extract")

    result.anomalies = await mirror.merge(conn, Decimal(settings.etl_max_amount), full=full)
    step("mirror")

    if not full and validate_network_of is None and await _nothing_to_derive(conn):
        # Nothing new or changed since the last cycle (the overlap re-read only rows already
        # mirrored): every derived table is already right. The steps are still reported.
        for name in ("network", "activity", "validation", "accrual", "publish", "transactions"):
            step(name)
    else:
        result.users_moved = await network.rebuild(conn, full=full)
        step("network")

        await activity.refresh(conn, full=full)
        if full:
            result.anomalies += await mirror.record_orphan_bets(conn)
        step("activity")

        extra = ""
        if validate_network_of is not None:
            extra = f" UNION SELECT user_id FROM etl.user_upline WHERE ancestor_id = {int(validate_network_of)}"
        result.validations = await validation.validate(conn, full=full, extra_candidates=extra)
        result.new_validation_ids = [r[0] for r in await conn.fetch("SELECT id FROM new_ledger")]
        if full:
            # Derived tables were emptied: every ledger row contributes again.
            await conn.execute(
                "INSERT INTO new_ledger SELECT id, affiliate_id, referred_user_id, cpa_level, "
                "cpa_amount, validation_date FROM affiliate_cpa_validations v "
                "WHERE NOT EXISTS (SELECT 1 FROM new_ledger n WHERE n.id = v.id)"
            )
        step("validation")

        await accrual.accrue(conn, full=full)
        step("accrual")

        written = await publish.publish(conn, full=full)
        result.affiliates_touched = written.pop("affiliates_touched")
        result.touched_affiliate_ids = [
            r[0] for r in await conn.fetch("SELECT affiliate_id FROM touched_affiliates LIMIT 10000")
        ]
        step("publish")

        written["affiliate_financial_transactions"] = await transactions.write(conn, full=full)
        if full:
            # Fresh statistics, or the next cycle's planner sees the empty tables of before.
            await conn.execute(f"ANALYZE {', '.join(_DERIVED)}")
        written["affiliate_cpa_validations"] = result.validations
        result.rows_written = written
        step("transactions")

    if full:
        await conn.execute("INSERT INTO etl.mirror_loaded VALUES (now())")
    for table, cursor in extracted.cursors.items():
        await conn.execute(
            "UPDATE etl.sync_cursors SET cursor_ts = $2, updated_at = now() "
            "WHERE source_table = $1 AND cursor_ts IS DISTINCT FROM $2",
            table,
            cursor,
        )
    await conn.execute(
        "UPDATE etl.runs SET status = 'success', finished_at = clock_timestamp(), "
        "source_as_of = $2, rows_read = $3::jsonb, rows_written = $4::jsonb, "
        "affiliates_touched = $5, anomalies = $6, mode = $7 WHERE id = $1",
        result.run_id,
        result.source_as_of,
        json.dumps(result.rows_read),
        json.dumps(result.rows_written),
        result.affiliates_touched,
        result.anomalies,
        result.mode,
    )
    # Delivered at commit only: API processes move their cache generation at once.
    await conn.execute(
        "SELECT pg_notify($1, $2 || ' ' || coalesce($3::timestamptz::text, ''))",
        COMMIT_CHANNEL, str(result.run_id), result.source_as_of,
    )
    step("commit")


def describe_target(url: str) -> str:
    return masked_url(url)
