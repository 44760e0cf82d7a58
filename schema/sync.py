"""How fresh the data is: the ETL runs (``etl.runs``)."""

from __future__ import annotations

from datetime import datetime

import strawberry
from sqlalchemy.engine import Row


@strawberry.type
class SyncRun:
    id: strawberry.ID
    mode: str
    trigger: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    source_as_of: datetime | None = strawberry.field(
        description="The operation database's clock when this run read it."
    )
    affiliates_touched: int
    error: str | None

    @classmethod
    def from_row(cls, row: Row) -> SyncRun:
        return cls(
            id=strawberry.ID(str(row.id)),
            mode=row.mode,
            trigger=row.trigger,
            status=row.status,
            started_at=row.started_at,
            finished_at=row.finished_at,
            source_as_of=row.source_as_of,
            affiliates_touched=row.affiliates_touched,
            error=row.error,
        )


@strawberry.type
class SyncStatus:
    last_successful_run: SyncRun | None
    last_run: SyncRun | None
    runs_in_progress: list[SyncRun]
    data_as_of: datetime | None = strawberry.field(
        description="The data reflects the operation database up to this instant."
    )
