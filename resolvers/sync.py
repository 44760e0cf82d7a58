"""Query.syncStatus: how fresh the data is, from the ETL's run history."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from resolvers.context import Context
from resolvers.loaders.base import sql

_COLUMNS = (
    "id, mode, trigger, status, started_at, finished_at, source_as_of, affiliates_touched, error"
)
# One SQL query: the last success, the last run of any kind, and the runs in progress.
_RUNS = sql(
    f"(SELECT 'success' AS kind, {_COLUMNS} FROM etl.runs WHERE status = 'success' "
    "ORDER BY finished_at DESC LIMIT 1) "
    f"UNION ALL (SELECT 'last' AS kind, {_COLUMNS} FROM etl.runs ORDER BY id DESC LIMIT 1) "
    f"UNION ALL (SELECT 'running' AS kind, {_COLUMNS} FROM etl.runs WHERE status = 'running' "
    "ORDER BY id)"
)


async def sync_runs(ctx: Context) -> Sequence[Any]:
    """Rows of ``etl.runs`` tagged by ``kind``: ``success`` (the last successful run),
    ``last`` (the last run of any kind) and ``running`` (each run in progress)."""
    return await ctx.access.global_state(_RUNS)
