"""What ``fature etl status`` and the API's syncStatus show: runs, cursors, freshness."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from db.engine import connect


@dataclass
class EtlStatus:
    runs: list[dict[str, Any]]
    cursors: dict[str, datetime | None]
    last_success: datetime | None
    freshness_s: float | None
    running: int
    anomalies: int


async def read_status(robust_url: str, last: int = 10) -> EtlStatus:
    conn = await connect(robust_url)
    try:
        runs = [
            dict(r)
            for r in await conn.fetch(
                "SELECT id, mode, trigger, status, started_at, affiliates_touched, anomalies, "
                "error, extract(epoch FROM finished_at - started_at)::float AS duration_s "
                "FROM etl.runs ORDER BY id DESC LIMIT $1",
                last,
            )
        ]
        cursors = {
            r["source_table"]: r["cursor_ts"]
            for r in await conn.fetch("SELECT source_table, cursor_ts FROM etl.sync_cursors ORDER BY 1")
        }
        row = await conn.fetchrow(
            "SELECT max(finished_at) AS last_success, "
            "extract(epoch FROM now() - max(finished_at))::float AS freshness_s, "
            "(SELECT count(*) FROM etl.runs WHERE status = 'running') AS running, "
            "(SELECT count(*) FROM etl.anomalies) AS anomalies "
            "FROM etl.runs WHERE status = 'success'"
        )
    finally:
        await conn.close()
    return EtlStatus(
        runs=runs,
        cursors=cursors,
        last_success=row["last_success"],
        freshness_s=row["freshness_s"],
        running=row["running"],
        anomalies=row["anomalies"],
    )
