"""The ETL's run history (``etl.runs``): the one place that writes it and says how to read it.

A run row is inserted ``running`` before the cycle's transaction opens, so a run that fails or
is killed is still on record; the cycle marks its own row ``success`` inside its transaction
(``finish_success``), so success and the data it wrote commit together.

Readers outside the ETL (the API's freshness, health and syncStatus) use the SQL constants,
which take no parameters; the async functions run the same SQL on an asyncpg connection.
"The last success" always means the successful run that finished last (``LAST_SUCCESS``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

# NOTIFY channel carrying "<run id> <source as-of>" of every committed run (other processes'
# caches move their generation on it).
COMMIT_CHANNEL = "fature_etl_committed"

# The columns of a run that the readers show.
RUN_COLUMNS = (
    "id, mode, trigger, status, started_at, finished_at, source_as_of, affiliates_touched, error"
)

# The successful run that finished last (RUN_COLUMNS, plus ``age_s``: seconds since it
# finished, by the database's clock); no row before the first success. Served by the
# (status, finished_at DESC) index.
LAST_SUCCESS = (
    f"SELECT {RUN_COLUMNS}, extract(epoch FROM now() - finished_at)::float AS age_s "
    "FROM etl.runs WHERE status = 'success' AND finished_at IS NOT NULL "
    "ORDER BY finished_at DESC LIMIT 1"
)

# The newest run of any status (RUN_COLUMNS).
LAST_RUN = f"SELECT {RUN_COLUMNS} FROM etl.runs ORDER BY id DESC LIMIT 1"

# The runs in progress, oldest first (RUN_COLUMNS).
RUNNING = f"SELECT {RUN_COLUMNS} FROM etl.runs WHERE status = 'running' ORDER BY id"

# LAST_SUCCESS, LAST_RUN and RUNNING in one round trip: RUN_COLUMNS after a ``kind`` column,
# 'success' (at most one row), 'last' (at most one) and 'running' (any number).
SYNC_STATUS = (
    f"(SELECT 'success' AS kind, {RUN_COLUMNS} FROM ({LAST_SUCCESS}) AS s) "
    f"UNION ALL (SELECT 'last' AS kind, {RUN_COLUMNS} FROM ({LAST_RUN}) AS l) "
    f"UNION ALL (SELECT 'running' AS kind, {RUN_COLUMNS} FROM ({RUNNING}) AS r)"
)

# The id of the newest finished run (any status but running); 0 before the first. Column ``id``.
LAST_FINISHED_ID = "SELECT coalesce(max(id), 0) AS id FROM etl.runs WHERE status <> 'running'"


def finished_after_sql(after: str = "$1") -> str:
    """The runs finished (any status but running) with an id above ``after``, oldest first.

    ``after`` is the placeholder of the run id: ``$1`` for asyncpg, ``:after`` for
    SQLAlchemy's ``text()``. Columns: id, mode, status, source_as_of, finished_at,
    ``seconds`` (its duration) and ``rows`` (the sum of its rows_written counts).
    """
    return (
        "SELECT id, mode, status, source_as_of, finished_at, "
        "extract(epoch FROM finished_at - started_at) AS seconds, "
        "(SELECT coalesce(sum(value::numeric), 0) FROM jsonb_each_text(rows_written) "
        " WHERE value ~ '^[0-9]+$') AS rows "
        f"FROM etl.runs WHERE id > {after} AND status <> 'running' ORDER BY id"
    )


FINISHED_AFTER = finished_after_sql()

# The newest runs, newest first, as ``fature etl status`` lists them (``duration_s`` is NULL
# while running). $1: how many.
RECENT = (
    "SELECT id, mode, trigger, status, started_at, affiliates_touched, anomalies, error, "
    "extract(epoch FROM finished_at - started_at)::float AS duration_s "
    "FROM etl.runs ORDER BY id DESC LIMIT $1"
)


@dataclass
class RunResult:
    """What one cycle did; the committed part of it is its ``etl.runs`` row."""

    run_id: int
    mode: str
    status: str
    rows_read: dict[str, int] = field(default_factory=dict)
    rows_written: dict[str, int] = field(default_factory=dict)
    affiliates_touched: int = 0
    anomalies: int = 0
    users_moved: int = 0
    validations: int = 0
    config_changes: int = 0  # configuration changes taken from the queue (etl/config_changes.py)
    duration_s: float = 0.0
    source_as_of: datetime | None = None
    touched_affiliate_ids: list[int] = field(default_factory=list)
    new_validation_ids: list[int] = field(default_factory=list)
    step_seconds: dict[str, float] = field(default_factory=dict)


# ---------------------------------------------------------------------------- writes


async def record_skipped(conn: asyncpg.Connection, mode: str, trigger: str) -> None:
    """Record a cycle that did not run because another one held the lock."""
    await conn.execute(
        "INSERT INTO etl.runs (mode, trigger, status, finished_at, error) "
        "VALUES ($1, $2, 'skipped', clock_timestamp(), 'another cycle held the lock')",
        mode,
        trigger,
    )


async def fail_abandoned(conn: asyncpg.Connection) -> None:
    """Mark failed every run still marked running. Call holding the ETL lock: such a run was
    abandoned by a process that stopped mid-run."""
    await conn.execute(
        "UPDATE etl.runs SET status = 'failed', finished_at = clock_timestamp(), "
        "error = 'abandoned (the process stopped mid-run; nothing of it was committed)' "
        "WHERE status = 'running'"
    )


async def start(conn: asyncpg.Connection, mode: str, trigger: str) -> int:
    """Insert a ``running`` run; returns its id."""
    run_id: int = await conn.fetchval(
        "INSERT INTO etl.runs (mode, trigger, status) VALUES ($1, $2, 'running') RETURNING id",
        mode,
        trigger,
    )
    return run_id


async def finish_success(conn: asyncpg.Connection, result: RunResult) -> None:
    """Mark the run a success with what it did; call inside the cycle's transaction."""
    await conn.execute(
        "UPDATE etl.runs SET status = 'success', finished_at = clock_timestamp(), "
        "source_as_of = $2, rows_read = $3::jsonb, rows_written = $4::jsonb, "
        "affiliates_touched = $5, anomalies = $6, mode = $7 WHERE id = $1",
        result.run_id,
        result.source_as_of,
        json.dumps(result.rows_read),
        json.dumps(result.rows_written),
        result.affiliates_touched,
        result.anomalies,
        result.mode,
    )


async def announce_commit(conn: asyncpg.Connection, run_id: int, source_as_of: datetime | None) -> None:
    """NOTIFY ``COMMIT_CHANNEL`` with "<run id> <source as-of>"; delivered at commit only."""
    await conn.execute(
        "SELECT pg_notify($1, $2 || ' ' || coalesce($3::timestamptz::text, ''))",
        COMMIT_CHANNEL, str(run_id), source_as_of,
    )


async def finish_failed(conn: asyncpg.Connection, run_id: int, message: str) -> None:
    """Mark the run failed with a one-line reason (cut to 2000 characters)."""
    await conn.execute(
        "UPDATE etl.runs SET status = 'failed', finished_at = clock_timestamp(), error = $2 "
        "WHERE id = $1",
        run_id,
        message[:2000],
    )


# ---------------------------------------------------------------------------- reads


async def last_success(conn: asyncpg.Connection) -> asyncpg.Record | None:
    """The successful run that finished last (``LAST_SUCCESS``), or None."""
    return await conn.fetchrow(LAST_SUCCESS)


async def last_run(conn: asyncpg.Connection) -> asyncpg.Record | None:
    """The newest run of any status (``LAST_RUN``), or None."""
    return await conn.fetchrow(LAST_RUN)


async def running(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """The runs in progress, oldest first (``RUNNING``)."""
    return list(await conn.fetch(RUNNING))


async def last_finished_id(conn: asyncpg.Connection) -> int:
    """The id of the newest finished run, 0 before the first (``LAST_FINISHED_ID``)."""
    return int(await conn.fetchval(LAST_FINISHED_ID))


async def finished_after(conn: asyncpg.Connection, run_id: int) -> list[asyncpg.Record]:
    """The runs finished after run ``run_id``, oldest first (``finished_after_sql``)."""
    return list(await conn.fetch(FINISHED_AFTER, run_id))


async def recent(conn: asyncpg.Connection, limit: int = 10) -> list[asyncpg.Record]:
    """The ``limit`` newest runs, newest first, with their duration (``RECENT``)."""
    return list(await conn.fetch(RECENT, limit))
