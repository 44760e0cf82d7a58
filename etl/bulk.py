"""Bulk-load helpers for the full load: build a table's indexes once, after the rows are in.

Maintaining a B-tree row by row while millions of rows arrive in random key order costs
several times more than one sorted build at the end. Only for tables that the full load
fills with plain INSERTs (an ON CONFLICT needs its unique index in place).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

_INDEXES = """
SELECT i.indexrelid::regclass::text AS index_name,
       pg_get_indexdef(i.indexrelid) AS definition,
       c.conname AS constraint_name,
       c.contype::text AS constraint_type
FROM pg_index i
LEFT JOIN pg_constraint c ON c.conindid = i.indexrelid AND c.conrelid = i.indrelid
WHERE i.indrelid = $1::regclass
"""


@asynccontextmanager
async def indexes_built_after(conn: asyncpg.Connection, *tables: str) -> AsyncIterator[None]:
    """Drop the tables' indexes (and the constraints they back), rebuild them on exit."""
    await conn.execute("SET LOCAL maintenance_work_mem = '1GB'")
    saved: list[tuple[str, asyncpg.Record]] = []
    for table in tables:
        for index in await conn.fetch(_INDEXES, table):
            saved.append((table, index))
            if index["constraint_name"]:
                await conn.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{index["constraint_name"]}"')
            else:
                await conn.execute(f"DROP INDEX {index['index_name']}")
    yield
    for table, index in saved:
        # A partitioned table's definition reads "ON ONLY parent": build it on every partition.
        await conn.execute(index["definition"].replace(" ON ONLY ", " ON ", 1))
        if index["constraint_name"]:
            kind = "PRIMARY KEY" if index["constraint_type"] == "p" else "UNIQUE"
            bare_name = index["index_name"].rsplit(".", 1)[-1]
            await conn.execute(
                f'ALTER TABLE {table} ADD CONSTRAINT "{index["constraint_name"]}" '
                f"{kind} USING INDEX {bare_name}"
            )


@asynccontextmanager
async def nested_loops(conn: asyncpg.Connection) -> AsyncIterator[None]:
    """Plan joins as index probes, for queries driven by a small change table.

    A cycle's change tables hold a few thousand keys against tables of millions of rows, but
    a join's row estimate cannot see how selective the keys are and often picks a hash join
    over a full scan; probing the big table's index once per changed key is what we want.
    """
    await conn.execute("SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off")
    try:
        yield
    finally:
        await conn.execute("SET LOCAL enable_hashjoin = on; SET LOCAL enable_mergejoin = on")


@asynccontextmanager
async def whole_table_scans(conn: asyncpg.Connection) -> AsyncIterator[None]:
    """Read whole tables by sequential scans, for a full load's statements over every row.

    Mid-load, a table just emptied and refilled carries the statistics of its previous
    contents, and the planner chose to aggregate every summary row in key order through an
    index: a random read of the heap, page by page, which grew faster than the data (217k
    page reads at seed scale, 442k-2.4M at three times it, issue 17).
    """
    await conn.execute("SET LOCAL enable_indexscan = off; SET LOCAL enable_bitmapscan = off")
    try:
        yield
    finally:
        await conn.execute("SET LOCAL enable_indexscan = on; SET LOCAL enable_bitmapscan = on")
