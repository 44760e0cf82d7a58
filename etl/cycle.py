"""One cycle's shared state, its start (cursors, full or incremental) and its commit step.

Every pipeline step (etl.pipeline) is an ``async def run(cycle: Cycle) -> None``: it reads the
robust connection, the mode and what earlier steps put on the cycle, and fills the cycle's
``RunResult``. The steps hand each other data through temporary tables of that connection's
transaction; etl.pipeline declares which.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

from db.engine import timeout_ms
from db.settings import Settings
from etl import runs
from etl.runs import RunResult

log = logging.getLogger("fature.etl")

# Derived state a full recompute rebuilds from the source; the ledger is never in it.
DERIVED_TABLES = (
    "affiliate_periodic_summaries",
    "affiliate_financial_transactions",
    "affiliate_referrals",
    "affiliate_mlm_structure",
    "affiliates",
    "affiliate_rank_values",
    "etl.affiliate_level_periods",
    "etl.user_daily",
    "etl.user_upline",
    "etl.edges",
    "etl.src_bets",
    "etl.src_saque",
    "etl.src_depositos",
    "etl.src_tracked",
    "etl.src_cadastro",
    "etl.mirror_loaded",
)


@dataclass
class Cycle:
    """What the steps of one cycle share. ``conn`` is inside the cycle's transaction."""

    conn: asyncpg.Connection
    source: asyncpg.Connection
    settings: Settings
    result: RunResult
    # Reconsider every unvalidated user of this affiliate's network for CPA (on demand).
    validate_network_of: int | None = None
    # Each source table's cursor as the cycle found it (None: read it all).
    cursors: dict[str, datetime | None] = field(default_factory=dict)
    # Each source table's cursor after this cycle's read (set by the extract step).
    new_cursors: dict[str, datetime | None] = field(default_factory=dict)

    @property
    def full(self) -> bool:
        """A full recompute: derived state was emptied and is rebuilt from the source."""
        return self.result.mode == "full"


async def begin(cycle: Cycle) -> None:
    """Session settings, the cursors, and the mode: an incremental cycle becomes a full load
    when nothing was ever loaded or the mirrors were lost; a full one empties derived state.

    Every statement of the cycle's transaction may run ``etl_timeout_seconds``
    (``FATURE_ETL_TIMEOUT_SECONDS``); PostgreSQL cancels a longer one and the cycle fails
    whole (etl.sync)."""
    conn = cycle.conn
    await conn.execute("SELECT set_config('statement_timeout', $1, true)", statement_timeout(cycle))
    await conn.execute("SELECT set_config('TimeZone', $1, true)", cycle.settings.timezone)
    await conn.execute("SET LOCAL work_mem = '256MB'")
    cycle.cursors = {
        r["source_table"]: r["cursor_ts"]
        for r in await conn.fetch("SELECT source_table, cursor_ts FROM etl.sync_cursors")
    }
    if not cycle.full and all(cursor is None for cursor in cycle.cursors.values()):
        # Nothing was ever loaded: the first load is a full load (set-based, not per pair).
        cycle.result.mode = "full"
    elif not cycle.full and not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM etl.mirror_loaded)"):
        # The unlogged mirrors were emptied by crash recovery (or this is a promoted replica
        # or a restored backup): only a full load can rebuild them (migration 0005).
        log.warning("the ETL's mirrors of the source are empty (crash recovery?): running a full load")
        cycle.result.mode = "full"
    if cycle.full:
        await conn.execute(_FULL_LOAD_MEMORY)
        await conn.execute(f"TRUNCATE {', '.join(await tables_to_empty(conn))}")
        await conn.execute("UPDATE etl.sync_cursors SET cursor_ts = NULL")
        cycle.cursors = dict.fromkeys(cycle.cursors)
    else:
        await conn.execute(_NO_JIT)


# A full load's memory: its temporary tables hold every user (staging, change sets, moved
# users: ~70 MB at seed scale, ~210 MB at three times it), and its hash aggregates every
# user's days. With the defaults (8 MB of temp buffers, the 256 MB above) they went to disk
# more than in proportion to the data at three times the seed scale (issue 17: the temp buffers
# rewritten 40 times over by the change sets of cadastro, the per-day activity spilling 9x the
# seed's temp files for 3x the rows). Set before the cycle's first temporary table (a session
# cannot change temp_buffers after that), for this transaction only; the memory is taken as
# used. An incremental cycle keeps the defaults: its tables are small.
_FULL_LOAD_MEMORY = "SELECT set_config('temp_buffers', '1GB', true), set_config('work_mem', '1GB', true)"

# No JIT compilation in a cycle that is not a full load. Its statements touch a batch's rows
# through indexes and run in milliseconds, but PostgreSQL decides to compile by the planner's
# cost, which follows the tables' sizes: at seed scale two statements of a 15-minute cycle
# crossed jit_above_cost, at three times it four (the transactions' DELETEs, probing 13
# monthly partitions), each compiling 80-130 functions for tens of milliseconds (issue 17);
# validation's candidates, priced on a criteria table taken for hundreds of rows, once spent
# two seconds compiling at seed scale. A full load keeps the server's setting: its scans are
# the kind JIT is for.
_NO_JIT = "SELECT set_config('jit', 'off', true)"

# The partitions of the transactions, and the months the archive job took (or is taking)
# offline (etl/archive.py).
_PARTITIONS = ("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
               "WHERE i.inhparent = 'affiliate_financial_transactions'::regclass")
_OFFLINE = "SELECT to_char(month, 'YYYYMM') FROM etl.archived_months WHERE state <> 'restored'"


async def tables_to_empty(conn: asyncpg.Connection) -> list[str]:
    """DERIVED_TABLES, except that a month the archive job has marked but not yet detached (a
    killed run) keeps its transaction rows: then the other partitions are emptied one by one."""
    offline = {r[0] for r in await conn.fetch(_OFFLINE)}
    held = [r[0] for r in await conn.fetch(_PARTITIONS) if r[0][-6:] in offline]
    if not held:
        return list(DERIVED_TABLES)
    online = [r[0] for r in await conn.fetch(_PARTITIONS) if r[0] not in held]
    return [t for t in DERIVED_TABLES if t != "affiliate_financial_transactions"] + online


def statement_timeout(cycle: Cycle) -> str:
    """The cycle's statement_timeout (milliseconds) as ``set_config`` takes it."""
    return str(timeout_ms(cycle.settings.etl_timeout_seconds))


async def commit(cycle: Cycle) -> None:
    """The last step: advance the cursors and mark the run a success, in the transaction."""
    conn, result = cycle.conn, cycle.result
    if cycle.full:
        await conn.execute("INSERT INTO etl.mirror_loaded VALUES (now())")
    for table, cursor in cycle.new_cursors.items():
        await conn.execute(
            "UPDATE etl.sync_cursors SET cursor_ts = $2, updated_at = now() "
            "WHERE source_table = $1 AND cursor_ts IS DISTINCT FROM $2",
            table,
            cursor,
        )
    await runs.finish_success(conn, result)
    # Delivered at commit only: API processes move their cache generation at once.
    await runs.announce_commit(conn, result.run_id, result.source_as_of)
