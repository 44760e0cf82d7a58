"""What ``fature etl status`` and the API's syncStatus show: runs, cursors, freshness."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from db.engine import connect
from etl import runs


@dataclass
class EtlStatus:
    runs: list[dict[str, Any]]
    cursors: dict[str, datetime | None]
    last_success: datetime | None
    freshness_s: float | None
    running: int
    anomalies: int


async def read_status(robust_url: str, last: int = 10) -> EtlStatus:
    """The ``last`` newest runs, the cursors, the last success and what is in progress."""
    conn = await connect(robust_url)
    try:
        recent = [dict(r) for r in await runs.recent(conn, last)]
        cursors = {
            r["source_table"]: r["cursor_ts"]
            for r in await conn.fetch("SELECT source_table, cursor_ts FROM etl.sync_cursors ORDER BY 1")
        }
        success = await runs.last_success(conn)
        running = len(await runs.running(conn))
        anomalies = await conn.fetchval("SELECT count(*) FROM etl.anomalies")
    finally:
        await conn.close()
    return EtlStatus(
        runs=recent,
        cursors=cursors,
        last_success=success["finished_at"] if success else None,
        freshness_s=success["age_s"] if success else None,
        running=running,
        anomalies=anomalies,
    )
