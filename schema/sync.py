"""How fresh the data is: the ETL runs (``etl.runs``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import strawberry
from sqlalchemy.engine import Row
from strawberry.types import Info

from resolvers import sync as sync_resolvers
from resolvers.global_ids import global_id
from schema.node import Node, register


@strawberry.type(description="One ETL run: a cycle that read the operation database and published its "
                             "figures in one transaction.")
class SyncRun(Node):
    run_id: strawberry.ID = strawberry.field(description="The run's number in the ETL's run history "
                                                         "(`fature etl status` shows it).")
    mode: str = strawberry.field(description="incremental (the 15-minute cycle), full (everything "
                                             "recomputed) or validate (validateCpa's run).")
    trigger: str = strawberry.field(description="What started it: the scheduler's job, the CLI, the demo "
                                                "or the API.")
    status: str = strawberry.field(description="running, success, failed, or skipped (another cycle held "
                                               "the lock).")
    started_at: datetime = strawberry.field(description="When the run started, an instant with offset.")
    finished_at: datetime | None = strawberry.field(description="When it finished; null while running.")
    source_as_of: datetime | None = strawberry.field(
        description="The operation database's clock when this run read it."
    )
    affiliates_touched: int = strawberry.field(description="How many affiliates' figures the run "
                                                           "changed.")
    error: str | None = strawberry.field(description="Why the run failed or was skipped; null otherwise.")

    @classmethod
    def from_row(cls, row: Row) -> SyncRun:
        return cls(
            id=strawberry.ID(global_id("SyncRun", row.id)),
            run_id=strawberry.ID(str(row.id)),
            mode=row.mode,
            trigger=row.trigger,
            status=row.status,
            started_at=row.started_at,
            finished_at=row.finished_at,
            source_as_of=row.source_as_of,
            affiliates_touched=row.affiliates_touched,
            error=row.error,
        )


@strawberry.type(description="How fresh the data is: the ETL's last runs.")
class SyncStatus:
    last_successful_run: SyncRun | None = strawberry.field(
        description="The successful run that finished last: what the figures come from; null before the "
                    "first.")
    last_run: SyncRun | None = strawberry.field(description="The newest run of any status; null before "
                                                            "the first.")
    runs_in_progress: list[SyncRun] = strawberry.field(description="The runs running now, oldest first "
                                                                   "(at most one holds the lock).")
    data_as_of: datetime | None = strawberry.field(
        description="The data reflects the operation database up to this instant."
    )


@strawberry.type
class SyncQueries:
    @strawberry.field(description="How fresh the data is: the last successful ETL run, the last run and "
                                  "the runs in progress.")
    async def sync_status(self, info: Info) -> SyncStatus:
        return sync_status_of(await sync_resolvers.sync_runs(info.context))


def sync_status_of(rows: Sequence[Row]) -> SyncStatus:
    """The status from ``etl.runs`` rows tagged by kind (``resolvers.sync.sync_runs``)."""
    by_kind = {r.kind: SyncRun.from_row(r) for r in rows if r.kind != "running"}
    success = next((r for r in rows if r.kind == "success"), None)
    return SyncStatus(
        last_successful_run=by_kind.get("success"),
        last_run=by_kind.get("last"),
        runs_in_progress=[SyncRun.from_row(r) for r in rows if r.kind == "running"],
        data_as_of=success.source_as_of if success is not None else None,
    )


register("SyncRun", SyncRun.from_row)
