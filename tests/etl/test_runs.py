"""The run history (etl.runs): what cycles record, and every read of it."""

from __future__ import annotations

import asyncpg
import pytest
from sqlalchemy import text

from etl import runs
from etl.status import read_status
from etl.sync import ETL_LOCK_KEY, EtlBusy, InjectedFailure, run_cycle
from tests.support.factories import Operation


async def test_runs_recorded_and_read(settings, robust_url, operation_url) -> None:
    conn = await asyncpg.connect(robust_url)
    try:
        assert await runs.last_success(conn) is None
        assert await runs.last_run(conn) is None
        assert await runs.last_finished_id(conn) == 0
        assert [tuple(r) for r in await conn.fetch(runs.SYNC_STATUS)] == []

        op = await Operation.open(operation_url)
        await op.user(1, afiliado=True)
        await op.user(2)
        await op.track(2, 1, "2025-01-01 12:00Z")
        await op.close()
        first = await run_cycle(settings, robust_url, operation_url)
        with pytest.raises(InjectedFailure):
            await run_cycle(settings, robust_url, operation_url, fail_after="publish")
        holder = await asyncpg.connect(robust_url)
        try:
            await holder.execute("SELECT pg_advisory_lock($1)", ETL_LOCK_KEY)
            with pytest.raises(EtlBusy):
                await run_cycle(settings, robust_url, operation_url)
        finally:
            await holder.close()
        second = await run_cycle(settings, robust_url, operation_url)

        success = await runs.last_success(conn)
        assert success is not None and success["id"] == second.run_id
        assert success["source_as_of"] == second.source_as_of and success["age_s"] >= 0
        assert (await runs.last_run(conn))["id"] == second.run_id
        assert await runs.running(conn) == []
        assert await runs.last_finished_id(conn) == second.run_id

        finished = await runs.finished_after(conn, first.run_id)
        assert [(r["mode"], r["status"]) for r in finished] == [
            ("incremental", "failed"), ("incremental", "skipped"), ("incremental", "success"),
        ]
        assert finished[-1]["rows"] == sum(second.rows_written.values())
        assert (await runs.finished_after(conn, 0))[0]["mode"] == "full"  # promoted first load

        recent = await runs.recent(conn, 2)
        assert [r["id"] for r in recent] == [second.run_id, second.run_id - 1]
        assert recent[1]["status"] == "skipped" and recent[1]["error"]

        # An abandoned run (its process died) is in progress until the next cycle fails it.
        stale = await runs.start(conn, "incremental", "test")
        kinds = [(r["kind"], r["id"]) for r in await conn.fetch(runs.SYNC_STATUS)]
        assert kinds == [("success", second.run_id), ("last", stale), ("running", stale)]
        status = await read_status(robust_url, 3)
        assert status.running == 1 and status.last_success == success["finished_at"]
        assert [r["id"] for r in status.runs] == [stale, second.run_id, second.run_id - 1]
        await run_cycle(settings, robust_url, operation_url)
        assert await conn.fetchval("SELECT status FROM etl.runs WHERE id = $1", stale) == "failed"
    finally:
        await conn.close()


def test_finished_after_for_sqlalchemy() -> None:
    clause = text(runs.finished_after_sql(":after"))
    assert set(clause._bindparams) == {"after"}
    assert "$1" in runs.FINISHED_AFTER
