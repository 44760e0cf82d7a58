"""Query.syncStatus: how fresh the data is, from the ETL's run history."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from etl import runs
from resolvers.context import Context
from resolvers.loaders.base import sql

# One SQL query: the last success, the last run of any kind, and the runs in progress.
_RUNS = sql(runs.SYNC_STATUS)


async def sync_runs(ctx: Context) -> Sequence[Any]:
    """Rows of ``etl.runs`` tagged by ``kind``: ``success`` (the last successful run),
    ``last`` (the last run of any kind) and ``running`` (each run in progress)."""
    return await ctx.access.global_state(_RUNS)
