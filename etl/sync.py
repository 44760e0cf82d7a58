"""One ETL cycle: the steps of etl.pipeline, run in order.

All of it runs in ONE transaction of the robust database, with the cursors advanced in that
same transaction: a crash, a kill or a source that drops mid-run leaves the robust database
exactly as it was. A session advisory lock makes sure only one cycle runs at a time across
processes; a second one is told so and skips. The run history is etl.runs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

import asyncpg

from db.engine import DatabaseUnavailable, connect, describe
from db.settings import Settings
from etl import bus, events, runs
from etl.cycle import Cycle, begin
from etl.pipeline import PIPELINE, STEPS, Step, is_idle, mode_of
from etl.runs import COMMIT_CHANNEL, RunResult

__all__ = [
    "COMMIT_CHANNEL",
    "ETL_LOCK_KEY",
    "STEPS",
    "AfterStep",
    "EtlBusy",
    "EtlError",
    "InjectedFailure",
    "Progress",
    "RunResult",
    "run_cycle",
]

log = logging.getLogger("fature.etl")

# pg advisory lock key shared by every process that writes the ledger or the aggregates.
ETL_LOCK_KEY = 0x4641545552450001


class EtlError(RuntimeError):
    """A cycle failed; nothing it did is visible. The message is one clear line."""


class EtlBusy(EtlError):
    """Another cycle holds the lock."""


class InjectedFailure(RuntimeError):
    """Raised by the ``fail_after`` test hook."""


# progress(step name, its number from 1, how many steps)
Progress = Callable[[str, int, int], None]
# after_step(step, cycle, pipeline mode so far): a test hook, awaited inside the transaction.
AfterStep = Callable[[Step, Cycle, str], Awaitable[None]]


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
    after_step: AfterStep | None = None,
) -> RunResult:
    """Run one cycle now. Raises EtlBusy when another holds the lock, EtlError on failure.

    ``validate_network_of``: also reconsider every unvalidated user of that affiliate's
    network for CPA (the on-demand validation of the API), in the same cycle.
    ``fail_after`` (a step name) and ``after_step`` are test hooks.
    """
    mode = "full" if full else ("validate" if validate_network_of is not None else "incremental")
    conn = await connect(robust_url)
    try:
        if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", ETL_LOCK_KEY):
            await runs.record_skipped(conn, mode, trigger)
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
                after_step,
            )
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", ETL_LOCK_KEY)
    finally:
        await conn.close()


async def _locked_cycle(
    conn: asyncpg.Connection,
    settings: Settings,
    operation_url: str,
    mode: str,
    trigger: str,
    progress: Progress | None,
    fail_after: str | None,
    validate_network_of: int | None,
    after_step: AfterStep | None,
) -> RunResult:
    # We hold the lock: a run still marked running was abandoned by a dead process.
    await runs.fail_abandoned(conn)
    run_id = await runs.start(conn, mode, trigger)
    result = RunResult(run_id=run_id, mode=mode, status="running")
    started = time.perf_counter()
    try:
        source = await connect(operation_url)
    except DatabaseUnavailable as exc:
        await _record_failure(conn, run_id, str(exc))
        raise EtlError(str(exc)) from exc
    try:
        async with conn.transaction():
            cycle = Cycle(
                conn=conn, source=source, settings=settings, result=result,
                validate_network_of=validate_network_of,
            )
            await _run_pipeline(cycle, progress, fail_after, after_step)
    except InjectedFailure:
        await _record_failure(conn, run_id, f"injected failure after {fail_after}")
        raise
    except asyncpg.QueryCanceledError as exc:
        message = (f"ETL cycle failed: a query ran longer than FATURE_ETL_TIMEOUT_SECONDS "
                   f"({settings.etl_timeout_seconds:g} s) and was cancelled; nothing was written")
        await _record_failure(conn, run_id, message)
        raise EtlError(message) from exc
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
    committed = events.EtlCommitted(
        run_id=run_id,
        mode=mode,
        source_as_of=result.source_as_of,
        affiliate_ids=frozenset(result.touched_affiliate_ids),
    )
    events.publish(committed)
    # Other processes (and those reading a replica, which never delivers NOTIFY) hear it here.
    if settings.redis_url:
        try:  # the run is committed: a failure here is logged, never raised
            database = await conn.fetchval("SELECT current_database()")
        except (asyncpg.PostgresError, OSError, asyncpg.InterfaceError):
            log.warning("ETL run %s committed but not announced on Redis", run_id)
        else:
            await bus.announce(settings.redis_url, database, committed)
    return result


async def _record_failure(conn: asyncpg.Connection, run_id: int, message: str) -> None:
    try:
        await runs.finish_failed(conn, run_id, message)
    except (asyncpg.PostgresError, OSError, asyncpg.InterfaceError):
        log.warning("could not record the failed run %s", run_id)


async def _run_pipeline(
    cycle: Cycle,
    progress: Progress | None,
    fail_after: str | None,
    after_step: AfterStep | None,
) -> None:
    """Every step of PIPELINE in order; an idle cycle skips the steps not marked when_idle."""
    last = time.perf_counter()  # the first step's time includes the cycle's start
    await begin(cycle)
    idle: bool | None = None  # decided before the first step that an idle cycle skips
    for number, step in enumerate(PIPELINE, 1):
        if idle is None and not step.when_idle:
            idle = await is_idle(cycle)
        mode = mode_of(cycle, bool(idle))
        if step.runs_in(mode):
            await step.run(cycle)
        now = time.perf_counter()
        cycle.result.step_seconds[step.name] = round(now - last, 3)
        last = now
        if progress:
            progress(step.name, number, len(PIPELINE))
        if after_step:
            await after_step(step, cycle, mode)
        if fail_after == step.name:
            raise InjectedFailure(step.name)
