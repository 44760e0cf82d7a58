"""Extract: changed source rows -> temporary staging tables in the robust database.

Each source table is read by a cheap range scan on its own indexed timestamp, from the
cursor minus the overlap window, inside one REPEATABLE READ snapshot of the source, and
streamed with binary COPY straight into a staging table of the robust transaction:
``staged_<source table>`` (``staged_cadastro``, ``staged_tracked``, ...), with the source's
columns.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from etl import mirror
from etl.cycle import Cycle, statement_timeout

# A staging table of an incremental cycle is small and read by plans the cycle pins (seq
# scans, index probes into the mirrors): its page count is all the planner needs, and
# ANALYZE would cost more than the queries it informs. Large ones (a catch-up after a
# pause, a full load) are analysed.
_ANALYZE_ABOVE = 100_000


@dataclass(frozen=True)
class SourceTable:
    name: str
    columns: tuple[str, ...]
    types: tuple[str, ...]
    cursor_column: str

    @property
    def staging(self) -> str:
        return f"staged_{self.name}"


SOURCES: tuple[SourceTable, ...] = (
    SourceTable(
        "cadastro",
        ("id", "nome", "email", "telefone", "afiliado", "status", "criado_em", "atualizado_em"),
        ("bigint", "text", "text", "text", "boolean", "text", "timestamptz", "timestamptz"),
        "atualizado_em",
    ),
    SourceTable(
        "tracked",
        ("id", "user_id", "afiliado_id", "criado_em", "atualizado_em"),
        ("bigint", "bigint", "bigint", "timestamptz", "timestamptz"),
        "atualizado_em",
    ),
    SourceTable(
        "depositos",
        ("id", "user_id", "valor", "status", "criado_em", "atualizado_em"),
        ("bigint", "bigint", "numeric(14,2)", "text", "timestamptz", "timestamptz"),
        "atualizado_em",
    ),
    SourceTable(
        "saque",
        ("id", "user_id", "valor", "status", "criado_em", "atualizado_em"),
        ("bigint", "bigint", "numeric(14,2)", "text", "timestamptz", "timestamptz"),
        "atualizado_em",
    ),
    SourceTable(
        "casino_bets_v",
        ("id", "user_id", "valor_aposta", "valor_premio", "criado_em"),
        ("bigint", "bigint", "numeric(14,2)", "numeric(14,2)", "timestamptz"),
        "criado_em",
    ),
)


@dataclass
class Extracted:
    rows: dict[str, int]
    cursors: dict[str, datetime | None]
    source_as_of: datetime


async def _pipe(
    source: asyncpg.Connection,
    target: asyncpg.Connection,
    query: str,
    args: list,
    table: SourceTable,
    into: str,
) -> None:
    """Stream one COPY out of the source into the staging table, chunk by chunk."""
    queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=64)

    async def produce() -> None:
        try:
            await source.copy_from_query(query, *args, output=queue.put, format="binary")
        except asyncio.CancelledError:
            raise  # the consumer is gone (it failed): nobody waits for the end, the queue may be full
        except BaseException:
            await queue.put(None)
            raise
        await queue.put(None)

    async def chunks() -> AsyncIterator[bytes]:
        while (chunk := await queue.get()) is not None:
            yield chunk

    producer = asyncio.create_task(produce())
    try:
        schema, _, name = into.rpartition(".")
        await target.copy_to_table(
            name, schema_name=schema or None, source=chunks(), columns=list(table.columns),
            format="binary",
            # A table emptied in this transaction takes its rows already frozen: nothing
            # rewrites 11 million rows' hint bits on their first read.
            freeze=bool(schema) or None,
        )
    finally:
        if not producer.done():
            producer.cancel()
        # Surface the source's error (e.g. the connection dropped) over the consumer's; a
        # producer cancelled here because the consumer failed leaves the consumer's error.
        (outcome,) = await asyncio.gather(producer, return_exceptions=True)
        if isinstance(outcome, BaseException) and not isinstance(outcome, asyncio.CancelledError):
            raise outcome


async def extract(
    source: asyncpg.Connection,
    target: asyncpg.Connection,
    cursors: dict[str, datetime | None],
    overlap: timedelta,
    direct: dict[str, str] | None = None,
    statement_timeout: str | None = None,
) -> Extracted:
    """Copy every source row changed since ``cursor - overlap`` into staging tables.

    ``target`` is inside the cycle's transaction: the staging tables are dropped at commit.
    ``direct`` maps a source table to the table its rows are copied into instead of its
    staging table (a full load copies the bets straight into their emptied mirror).
    ``statement_timeout`` (milliseconds): each statement of the source's snapshot may run so long.
    Returns rows read per table and each table's new cursor (the source's own timestamps).
    """
    direct = direct or {}
    for table in SOURCES:
        cols = ", ".join(f"{c} {t}" for c, t in zip(table.columns, table.types, strict=True))
        await target.execute(f"CREATE TEMP TABLE {table.staging} ({cols}) ON COMMIT DROP")

    rows: dict[str, int] = {}
    new_cursors: dict[str, datetime | None] = {}
    async with source.transaction(isolation="repeatable_read", readonly=True):
        if statement_timeout is not None:
            await source.execute("SELECT set_config('statement_timeout', $1, true)", statement_timeout)
        source_as_of = await source.fetchval("SELECT now()")
        for table in SOURCES:
            select = f"SELECT {', '.join(table.columns)} FROM {table.name}"
            cursor = cursors.get(table.name)
            if cursor is None:
                query, args = select, []
            else:
                query, args = f"{select} WHERE {table.cursor_column} > $1", [cursor - overlap]
            into = direct.get(table.name, table.staging)
            await _pipe(source, target, query, args, table, into)
            count, high = await target.fetchrow(
                f"SELECT count(*), max({table.cursor_column}) FROM {into}"
            )
            rows[table.name] = count
            candidates = [c for c in (cursor, high) if c is not None]
            new_cursors[table.name] = max(candidates) if candidates else None
            if cursor is None or count > _ANALYZE_ABOVE:
                await target.execute(f"ANALYZE {into}")
    return Extracted(rows=rows, cursors=new_cursors, source_as_of=source_as_of)


# The staging tables this step leaves for the mirror step.
STAGING_TABLES = tuple(table.staging for table in SOURCES)


async def run(cycle: Cycle) -> None:
    """The pipeline step: stage every source row changed since the cursors."""
    direct = {}
    if cycle.full:
        # Millions of bets go straight into their emptied mirror, not through staging.
        await mirror.prepare_bulk_bets(cycle.conn)
        direct = {"casino_bets_v": "etl.src_bets"}
    overlap = timedelta(minutes=cycle.settings.etl_overlap_minutes)
    extracted = await extract(cycle.source, cycle.conn, cycle.cursors, overlap, direct,
                              statement_timeout=statement_timeout(cycle))
    cycle.result.rows_read = extracted.rows
    cycle.result.source_as_of = extracted.source_as_of
    cycle.new_cursors = extracted.cursors
