"""The ETL's statement timeout (FATURE_ETL_TIMEOUT_SECONDS, issue 13): every statement of the
cycle's transaction and of the source's snapshot runs under it; a statement PostgreSQL cancels
fails the cycle with one clear line, and the robust database is left exactly as it was."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from db.settings import Settings
from etl.cycle import Cycle
from etl.pipeline import Step
from etl.sync import EtlError, run_cycle
from tests.support.factories import Operation

MESSAGE = "a query ran longer than FATURE_ETL_TIMEOUT_SECONDS"
# What a cycle writes (besides its run history): unchanged by a cycle that timed out.
STATE = (
    "SELECT (SELECT array_agg(source_table || '=' || coalesce(cursor_ts::text, '-') ORDER BY 1)"
    "         FROM etl.sync_cursors) AS cursors,"
    " (SELECT count(*) FROM affiliates) AS affiliates,"
    " (SELECT count(*) FROM etl.src_bets) AS bets,"
    " (SELECT coalesce(sum(total_ggr), 0) FROM affiliate_periodic_summaries) AS ggr"
)


@pytest.fixture
async def loaded(settings: Settings, robust_url: str, operation_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A robust database after one full cycle, with new source rows waiting for the next; a
    connection to it."""
    op = await Operation.open(operation_url)
    try:
        await op.user(1, afiliado=True)
        await op.user(2)
        await op.track(2, 1, "2025-01-01 12:00Z")
        await op.bet(2, "60.00", "10.00", "2025-01-02 12:00Z")
        assert (await run_cycle(settings, robust_url, operation_url)).status == "success"
        await op.user(3)
        await op.track(3, 1, "2025-01-03 12:00Z")
        await op.bet(3, "80.00", "5.00", "2025-01-03 13:00Z")
    finally:
        await op.close()
    conn = await asyncpg.connect(robust_url)
    yield conn
    await conn.close()


def timed(settings: Settings, seconds: float) -> Settings:
    return settings.model_copy(update={"etl_timeout_seconds": seconds})


async def last_run(conn: asyncpg.Connection) -> asyncpg.Record:
    return await conn.fetchrow("SELECT status, error FROM etl.runs ORDER BY id DESC LIMIT 1")


async def test_the_cycle_runs_under_the_etl_timeout(
    settings: Settings, robust_url: str, operation_url: str, loaded: asyncpg.Connection
) -> None:
    seen: dict[str, Any] = {}

    async def hook(step: Step, cycle: Cycle, mode: str) -> None:
        seen[step.name] = await cycle.conn.fetchval("SHOW statement_timeout")

    result = await run_cycle(timed(settings, 12.5), robust_url, operation_url, after_step=hook)
    assert result.status == "success"
    assert set(seen.values()) == {"12500ms"}  # every step, in the cycle's transaction
    # SET LOCAL: the robust connection's session is back to the server's default afterwards.
    assert await loaded.fetchval("SHOW statement_timeout") == "0"


async def test_a_slow_statement_in_the_cycle_fails_it_cleanly(
    settings: Settings, robust_url: str, operation_url: str, loaded: asyncpg.Connection
) -> None:
    before = await loaded.fetchrow(STATE)

    async def slow(step: Step, cycle: Cycle, mode: str) -> None:
        if step.name == "mirror":  # data of this cycle is written by now, inside its transaction
            await cycle.conn.execute("SELECT pg_sleep(5)")

    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(EtlError) as failure:
        await run_cycle(timed(settings, 0.5), robust_url, operation_url, after_step=slow)
    assert loop.time() - started < 4  # cancelled by the server at 0.5 s, not slept out
    assert MESSAGE in str(failure.value) and "0.5 s" in str(failure.value)
    assert "\n" not in str(failure.value)
    assert await loaded.fetchrow(STATE) == before
    run = await last_run(loaded)
    assert run["status"] == "failed" and MESSAGE in run["error"]
    # The next cycle (the default timeout) loads what this one could not.
    assert (await run_cycle(settings, robust_url, operation_url)).status == "success"
    assert (await loaded.fetchrow(STATE))["affiliates"] == before["affiliates"]
    assert await loaded.fetchval("SELECT count(*) FROM etl.src_bets") == before["bets"] + 1


async def test_a_slow_source_read_fails_the_cycle_cleanly(
    settings: Settings, robust_url: str, operation_url: str, loaded: asyncpg.Connection
) -> None:
    before = await loaded.fetchrow(STATE)
    locker = await asyncpg.connect(operation_url)
    try:
        # The source's snapshot read of the users waits on this lock past the timeout.
        transaction = locker.transaction()
        await transaction.start()
        await locker.execute("LOCK TABLE cadastro IN ACCESS EXCLUSIVE MODE")
        with pytest.raises(EtlError) as failure:
            await asyncio.wait_for(run_cycle(timed(settings, 0.5), robust_url, operation_url), 20)
        await transaction.rollback()
    finally:
        await locker.close()
    assert MESSAGE in str(failure.value)
    assert await loaded.fetchrow(STATE) == before
    assert (await last_run(loaded))["status"] == "failed"
