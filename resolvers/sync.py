"""Query.syncStatus: how fresh the data is, from the ETL's run history."""

from __future__ import annotations

from strawberry.types import Info

from resolvers.context import Context
from resolvers.loaders.base import sql
from schema.sync import SyncRun, SyncStatus

_COLUMNS = (
    "id, mode, trigger, status, started_at, finished_at, source_as_of, affiliates_touched, error"
)
# One statement: the last success, the last run of any kind, and the runs in progress.
_RUNS = sql(
    f"(SELECT 'success' AS kind, {_COLUMNS} FROM etl.runs WHERE status = 'success' "
    "ORDER BY finished_at DESC LIMIT 1) "
    f"UNION ALL (SELECT 'last' AS kind, {_COLUMNS} FROM etl.runs ORDER BY id DESC LIMIT 1) "
    f"UNION ALL (SELECT 'running' AS kind, {_COLUMNS} FROM etl.runs WHERE status = 'running' "
    "ORDER BY id)"
)


async def sync_status(info: Info) -> SyncStatus:
    ctx: Context = info.context
    rows = await ctx.access.global_state(_RUNS)
    by_kind = {r.kind: SyncRun.from_row(r) for r in rows if r.kind != "running"}
    success = next((r for r in rows if r.kind == "success"), None)
    return SyncStatus(
        last_successful_run=by_kind.get("success"),
        last_run=by_kind.get("last"),
        runs_in_progress=[SyncRun.from_row(r) for r in rows if r.kind == "running"],
        data_as_of=success.source_as_of if success is not None else None,
    )
