"""A run committed by another process reaches the API's cache generation by NOTIFY."""

from __future__ import annotations

import asyncio

import asyncpg

from etl import runs
from tests.support.deployment import Deployment, serve


async def test_a_commit_elsewhere_moves_the_generation_at_once(
    deployment: Deployment, robust_url: str, operation_url: str
) -> None:
    # A database of its own: the shared deployment's apps listen on theirs and never hear this run.
    own = Deployment(robust_url, operation_url, deployment.settings.model_copy(
        update={"database_url": robust_url, "operation_database_url": operation_url}))
    # No poll: only the NOTIFY path can tell the app about the run.
    async with serve(own, cache_enabled=True, freshness_poll_seconds=0) as served:
        freshness = served.app.state.api.freshness
        await asyncio.sleep(0.3)  # the listener connects
        before = freshness.snapshot.generation
        conn = await asyncpg.connect(robust_url)
        try:
            async with conn.transaction():
                run_id, as_of = await conn.fetchrow(
                    "INSERT INTO etl.runs (mode, trigger, status, finished_at, source_as_of) "
                    "VALUES ('incremental', 'other-process', 'success', clock_timestamp(), now()) "
                    "RETURNING id, source_as_of"
                )
                # As the ETL announces a commit; every app of this test process hears it.
                await runs.announce_commit(conn, run_id, as_of)
            for _ in range(50):
                if freshness.snapshot.generation == run_id:
                    break
                await asyncio.sleep(0.02)
            assert run_id > before
            assert freshness.snapshot.generation == run_id
            assert freshness.snapshot.as_of == as_of
        finally:
            await conn.execute("DELETE FROM etl.runs WHERE id = $1", run_id)
            await conn.close()
