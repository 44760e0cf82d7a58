"""A run committed by another process reaches the API's cache generation by NOTIFY."""

from __future__ import annotations

import asyncio

import asyncpg

from etl.sync import COMMIT_CHANNEL
from tests.resolvers.world import World, serve


async def test_a_commit_elsewhere_moves_the_generation_at_once(world: World) -> None:
    # No poll: only the NOTIFY path can tell the app about the run.
    async with serve(world, cache_enabled=True, freshness_poll_seconds=0) as served:
        freshness = served.app.state.api.freshness
        await asyncio.sleep(0.3)  # the listener connects
        before = freshness.snapshot.generation
        conn = await asyncpg.connect(world.robust_url)
        try:
            async with conn.transaction():
                run_id = await conn.fetchval(
                    "INSERT INTO etl.runs (mode, trigger, status, finished_at, source_as_of) "
                    "VALUES ('incremental', 'other-process', 'success', clock_timestamp(), now()) "
                    "RETURNING id"
                )
                await conn.execute("SELECT pg_notify($1, $2)", COMMIT_CHANNEL, str(run_id))
            for _ in range(50):
                if freshness.snapshot.generation == run_id:
                    break
                await asyncio.sleep(0.02)
            assert run_id > before
            assert freshness.snapshot.generation == run_id
        finally:
            await conn.execute("DELETE FROM etl.runs WHERE id = $1", run_id)
            await conn.close()
