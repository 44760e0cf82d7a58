"""Financial transactions: the money movements of each affiliate's network, by level.

Deposits and withdrawals are one row per source row and upline level (``source_id`` names
the source row); bets and wins one row per user, local day and level (dated at the local
midnight); CPA one row per ledger row; REV one row per affiliate, level and day with a
non-zero accrual. The table is partitioned by month; partitions are created as data arrives,
except for months archived by etl/archive.py: their rows are not written (a full recompute
rebuilds online months only).
"""

from __future__ import annotations

from datetime import date

import asyncpg

from etl.bulk import indexes_built_after, nested_loops
from etl.cycle import DERIVED_TABLES, Cycle

_PARENT = "affiliate_financial_transactions"

# What to delete before re-inserting, each driven by one change table (skipped when empty).
_DELETES = {
    # Rows of moved users: their whole history moves to their new upline.
    "moved_users": """
        DELETE FROM affiliate_financial_transactions f USING moved_users m
        WHERE f.user_id = m.user_id
          AND f.transaction_type IN ('deposit', 'withdrawal', 'bet', 'win')""",
    # Changed deposit and withdrawal rows (as written before, and under their new values); the
    # date pins each probe to one monthly partition.
    "changed_money_rows": """
        DELETE FROM affiliate_financial_transactions f
        USING (SELECT kind, id, user_id, criado_em FROM changed_money_rows
               WHERE user_id IS NOT NULL AND criado_em IS NOT NULL
               UNION SELECT kind, id, old_user_id, old_criado_em FROM changed_money_rows
               WHERE old_user_id IS NOT NULL AND old_criado_em IS NOT NULL) c
        WHERE f.user_id = c.user_id AND f.source_id = c.id AND f.transaction_date = c.criado_em
          AND f.transaction_type = CASE c.kind WHEN 'depositos' THEN 'deposit' ELSE 'withdrawal' END""",
    # Bet and win rows of the changed (user, day) pairs.
    "changed_user_days": """
        DELETE FROM affiliate_financial_transactions f USING changed_user_days a
        WHERE f.user_id = a.user_id AND f.transaction_type IN ('bet', 'win')
          AND f.transaction_date = a.day::timestamptz""",
    # REV rows of the changed daily accruals.
    "period_deltas": """
        DELETE FROM affiliate_financial_transactions f USING period_deltas d
        WHERE d.period_type = 'daily' AND f.affiliate_id = d.affiliate_id AND f.mlm_level = d.level
          AND f.transaction_type = 'rev' AND f.transaction_date = d.period_start::timestamptz""",
}


# Source rows of moved users (by user) and changed source rows (by id), through indexes.
_MONEY_ROWS = """
SELECT u.ancestor_id, s.user_id, u.level, '{type}', s.valor, s.criado_em, s.id
FROM (SELECT x.* FROM etl.src_{table} x
      WHERE x.user_id = ANY (ARRAY(SELECT user_id FROM moved_users))
      UNION
      SELECT x.* FROM etl.src_{table} x
      WHERE x.id = ANY (ARRAY(SELECT id FROM changed_money_rows WHERE kind = '{table}'))) AS s
JOIN etl.user_upline u ON u.user_id = s.user_id
WHERE s.ok AND s.status = 'aprovado'
"""

_MONEY_ROWS_ALL = """
SELECT u.ancestor_id, s.user_id, u.level, '{type}', s.valor, s.criado_em, s.id
FROM etl.src_{table} s JOIN etl.user_upline u ON u.user_id = s.user_id
WHERE s.ok AND s.status = 'aprovado'
"""

_INSERT = """
INSERT INTO affiliate_financial_transactions
    (affiliate_id, user_id, mlm_level, transaction_type, amount, transaction_date, source_id)
{rows}
"""

# Months archived (or being archived) by etl/archive.py: the ETL never writes nor recreates
# their partitions (their aggregates still change; the archive file stays as it was).
OFFLINE_MONTHS = "SELECT month FROM etl.archived_months WHERE state <> 'restored' ORDER BY month"

# _INSERT leaving out the rows dated in offline months ({months}: their first days).
_INSERT_ONLINE = """
INSERT INTO affiliate_financial_transactions
    (affiliate_id, user_id, mlm_level, transaction_type, amount, transaction_date, source_id)
SELECT * FROM ({rows}) AS r(affiliate_id, user_id, mlm_level, transaction_type, amount,
                            transaction_date, source_id)
WHERE date_trunc('month', r.transaction_date)::date NOT IN ({months})
"""

_PLAY_ROWS = """
SELECT u.ancestor_id, n.user_id, u.level, kind.type,
       CASE kind.type WHEN 'bet' THEN n.stake ELSE n.win END, n.day::timestamptz, NULL::bigint
FROM user_days_after n
JOIN etl.user_upline u ON u.user_id = n.user_id
CROSS JOIN (VALUES ('bet'), ('win')) AS kind(type)
WHERE (kind.type = 'bet' AND n.bet_count > 0) OR (kind.type = 'win' AND n.win > 0)
"""

_LEDGER_ROWS = """
SELECT affiliate_id, referred_user_id, cpa_level, 'cpa', cpa_amount, validation_date, id
FROM new_ledger_rows
"""

_REV_ROWS = """
SELECT l.affiliate_id, NULL::bigint, l.level, 'rev', l.rev, l.period_start::timestamptz, NULL::bigint
FROM period_deltas d
JOIN etl.affiliate_level_periods l
  ON l.affiliate_id = d.affiliate_id AND l.period_type = 'daily'
 AND l.period_start = d.period_start AND l.level = d.level
WHERE d.period_type = 'daily' AND l.rev <> 0
"""

# The local days any row of this cycle can fall on, by the change table that brings them.
_DAYS = {
    "user_days_after": "SELECT day FROM user_days_after",
    "period_deltas": "SELECT period_start FROM period_deltas WHERE period_type = 'daily'",
    "new_ledger_rows": "SELECT validation_date::date FROM new_ledger_rows",
    "changed_money_rows": """SELECT s.criado_em::date FROM etl.src_depositos s
        JOIN changed_money_rows c ON c.kind = 'depositos' AND c.id = s.id
        WHERE s.criado_em IS NOT NULL
        UNION ALL SELECT s.criado_em::date FROM etl.src_saque s
        JOIN changed_money_rows c ON c.kind = 'saque' AND c.id = s.id WHERE s.criado_em IS NOT NULL""",
    "moved_users": """SELECT s.criado_em::date FROM etl.src_depositos s
        JOIN moved_users m USING (user_id) WHERE s.criado_em IS NOT NULL
        UNION ALL SELECT s.criado_em::date FROM etl.src_saque s
        JOIN moved_users m USING (user_id) WHERE s.criado_em IS NOT NULL""",
}

_CHANGE_COUNTS = """
SELECT (SELECT count(*) FROM moved_users) AS moved_users,
       (SELECT count(*) FROM changed_money_rows) AS changed_money_rows,
       (SELECT count(*) FROM changed_user_days) AS changed_user_days,
       (SELECT count(*) FROM user_days_after) AS user_days_after,
       (SELECT count(*) FROM period_deltas) AS period_deltas,
       (SELECT count(*) FROM new_ledger_rows) AS new_ledger_rows
"""


def _next_month(month: date) -> date:
    return date(month.year + (month.month == 12), month.month % 12 + 1, 1)


async def ensure_partitions(conn: asyncpg.Connection, months: list[date]) -> int:
    """Create the monthly partitions (local months) that do not exist yet, never one of an
    archived month."""
    offline = {r[0] for r in await conn.fetch(OFFLINE_MONTHS)}
    existing = {
        row["relname"]
        for row in await conn.fetch(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = $1::regclass",
            _PARENT,
        )
    }
    created = 0
    for month in sorted(set(months)):
        name = f"{_PARENT}_p{month:%Y%m}"
        if name in existing or month in offline:
            continue
        # Bounds are local midnights: the session time zone is the business zone.
        await conn.execute(
            f"CREATE TABLE {name} PARTITION OF {_PARENT} "
            f"FOR VALUES FROM ('{month.isoformat()}') TO ('{_next_month(month).isoformat()}')"
        )
        created += 1
    return created


async def run(cycle: Cycle) -> None:
    """The pipeline step: replace the transaction rows this cycle changed."""
    written = cycle.result.rows_written
    written["affiliate_financial_transactions"] = await write(cycle.conn, full=cycle.full)
    if cycle.full:
        # Fresh statistics, or the next cycle's planner sees the empty tables of before.
        await cycle.conn.execute(f"ANALYZE {', '.join(DERIVED_TABLES)}")
    written["affiliate_cpa_validations"] = cycle.result.validations


async def write(conn: asyncpg.Connection, *, full: bool) -> int:
    """Replace the transaction rows this cycle changed; returns rows inserted."""
    changed = {k: v for k, v in (await conn.fetchrow(_CHANGE_COUNTS)).items() if v}
    if not changed:
        return 0
    if full:
        # Every transaction row of a full load is dated on a day with activity (money, bets,
        # and the REV and CPA they bring) or on a validation instant.
        days = (
            "(SELECT day FROM etl.user_daily) "
            "UNION ALL (SELECT validation_date::date FROM new_ledger_rows)"
        )
    else:
        days = " UNION ALL ".join(f"({sql})" for name, sql in _DAYS.items() if name in changed)
    months = (
        [
            r[0]
            for r in await conn.fetch(
                f"SELECT DISTINCT date_trunc('month', day::timestamp)::date FROM ({days}) AS d(day)"
            )
        ]
        if days
        else []
    )
    await ensure_partitions(conn, [m for m in months if m is not None])
    if full:
        # Millions of rows into empty partitions: build the indexes once, after the load.
        async with indexes_built_after(conn, _PARENT):
            return await _insert(conn, _MONEY_ROWS_ALL, changed)
    offline = await _offline_months(conn)
    async with nested_loops(conn):
        for name, sql in _DELETES.items():
            if name in changed:
                # A month on its way to the archive (still attached) keeps its rows as they are.
                await conn.execute(sql + (f"\n AND date_trunc('month', f.transaction_date)::date "
                                          f"NOT IN ({offline})" if offline else ""))
    return await _insert(conn, _MONEY_ROWS, changed)


async def _offline_months(conn: asyncpg.Connection) -> str:
    """The first days of the offline months as a SQL list ('' when there are none)."""
    return ", ".join(f"'{r[0].isoformat()}'::date" for r in await conn.fetch(OFFLINE_MONTHS))


async def _insert(conn: asyncpg.Connection, money: str, changed: dict[str, int]) -> int:
    sources = []
    if {"moved_users", "changed_money_rows"} & changed.keys():
        sources += [
            money.format(table="depositos", type="deposit"),
            money.format(table="saque", type="withdrawal"),
        ]
    if "user_days_after" in changed:
        sources.append(_PLAY_ROWS)
    if "new_ledger_rows" in changed:
        sources.append(_LEDGER_ROWS)
    if "period_deltas" in changed:
        sources.append(_REV_ROWS)
    offline = await _offline_months(conn)
    inserted = 0
    for rows in sources:
        sql = _INSERT_ONLINE.format(rows=rows, months=offline) if offline else _INSERT.format(rows=rows)
        status = await conn.execute(sql)
        inserted += int(status.split()[-1])
    return inserted
