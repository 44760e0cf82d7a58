"""Activity: each user's approved money and bets per local day (etl.user_daily).

Deposits and withdrawals count while their current status is ``aprovado``, at ``criado_em``;
every bet counts at ``criado_em``. Days are local: the cycle runs with the business time zone
as the session time zone, so ``ts::date`` is the local calendar date.

``refresh`` leaves ``user_days_before`` and ``user_days_after``: the rows of the moved users
(all days) and of the changed (user, day) pairs, before and after, which is exactly what the
accrual needs (``is_moved`` tells the two kinds apart).
"""

from __future__ import annotations

import asyncpg

from etl import mirror
from etl.bulk import indexes_built_after
from etl.cycle import Cycle

# Per changed (user, day) pair: LATERAL aggregates make every source read an index range
# scan on (user_id, criado_em), whatever the planner thinks of the pair count.
# An approved-money total of one (user, day) pair, for depositos and saque alike.
_MONEY_OF_PAIR = """
CROSS JOIN LATERAL (
    SELECT coalesce(sum(x.valor), 0) AS {amount}, count(*) AS {count}
    FROM etl.src_{table} x
    WHERE x.user_id = a.user_id AND x.ok AND x.status = 'aprovado'
      AND x.criado_em >= a.day::timestamptz AND x.criado_em < (a.day + 1)::timestamptz
) AS {alias}"""

# An incremental cycle's changed pairs are of two kinds (the mirror step leaves both). Where a
# deposit or withdrawal changed, as it is now or as it was (``changed_money_days``), the day's
# money is recomputed from the mirrors. Bets are append-only: a day's bet figures only ever grow
# by the bets this cycle inserted (``new_bet_days``), so they are added to the day as it was,
# never re-read.

_ADD_BETS = """
ON CONFLICT (user_id, day) DO UPDATE SET{money}
    stake = ud.stake + EXCLUDED.stake, win = ud.win + EXCLUDED.win,
    bet_count = ud.bet_count + EXCLUDED.bet_count,
    first_bet_at = least(ud.first_bet_at, EXCLUDED.first_bet_at)
"""

_COLUMNS = """
INSERT INTO etl.user_daily AS ud
    (user_id, day, deposits, deposit_count, withdrawals, withdrawal_count, stake, win,
     bet_count, first_bet_at)"""

_MONEY_DAYS = (
    _COLUMNS
    + """
SELECT a.user_id, a.day, d.deposits, d.deposit_count::int, w.withdrawals, w.withdrawal_count::int,
       coalesce(n.stake, 0), coalesce(n.win, 0), coalesce(n.bet_count, 0), n.first_bet_at
FROM changed_money_days a"""
    + _MONEY_OF_PAIR.format(table="depositos", amount="deposits", count="deposit_count", alias="d")
    + _MONEY_OF_PAIR.format(table="saque", amount="withdrawals", count="withdrawal_count", alias="w")
    + """
LEFT JOIN new_bet_days n ON n.user_id = a.user_id AND n.day = a.day"""
    + _ADD_BETS.replace(
        "{money}",
        "\n    deposits = EXCLUDED.deposits, deposit_count = EXCLUDED.deposit_count,"
        "\n    withdrawals = EXCLUDED.withdrawals, withdrawal_count = EXCLUDED.withdrawal_count,",
    )
    + """;
-- A day left with no approved money and no bets has no row.
DELETE FROM etl.user_daily ud USING changed_money_days a
WHERE ud.user_id = a.user_id AND ud.day = a.day
  AND ud.deposit_count + ud.withdrawal_count + ud.bet_count = 0;
"""
)

_BET_DAYS = (
    _COLUMNS
    + """
SELECT b.user_id, b.day, 0, 0, 0, 0, b.stake, b.win, b.bet_count, b.first_bet_at
FROM new_bet_days b
WHERE NOT EXISTS (SELECT 1 FROM changed_money_days m
                  WHERE m.user_id = b.user_id AND m.day = b.day)"""
    + _ADD_BETS.replace("{money}", "")
)

_ACTIVITY_ALL = """
SELECT user_id, day,
       sum(deposits) AS deposits, sum(deposit_count)::int AS deposit_count,
       sum(withdrawals) AS withdrawals, sum(withdrawal_count)::int AS withdrawal_count,
       sum(stake) AS stake, sum(win) AS win, sum(bet_count)::int AS bet_count,
       min(first_bet_at) AS first_bet_at
FROM (
    SELECT user_id, criado_em::date AS day, valor AS deposits, 1 AS deposit_count,
           0 AS withdrawals, 0 AS withdrawal_count, 0 AS stake, 0 AS win, 0 AS bet_count,
           NULL::timestamptz AS first_bet_at
    FROM etl.src_depositos WHERE ok AND status = 'aprovado'
    UNION ALL
    SELECT user_id, criado_em::date, 0, 0, valor, 1, 0, 0, 0, NULL
    FROM etl.src_saque WHERE ok AND status = 'aprovado'
    UNION ALL
    SELECT user_id, day, 0, 0, 0, 0, stake, win, bet_count, first_bet_at
    FROM (SELECT user_id, criado_em::date AS day, sum(valor_aposta) AS stake,
                 sum(valor_premio) AS win, count(*) AS bet_count, min(criado_em) AS first_bet_at
          FROM etl.src_bets GROUP BY 1, 2) AS bets
) AS events
GROUP BY user_id, day
"""

_SNAPSHOT = """
CREATE TEMP TABLE {name} ON COMMIT DROP AS
SELECT ud.*, true AS is_moved
FROM etl.user_daily ud JOIN moved_users m USING (user_id)
UNION ALL
SELECT ud.*, false
FROM etl.user_daily ud JOIN changed_user_days a USING (user_id, day)
WHERE NOT EXISTS (SELECT 1 FROM moved_users m WHERE m.user_id = ud.user_id);
ANALYZE {name};
"""


_ALL_NEW = """
CREATE TEMP TABLE user_days_after ON COMMIT DROP AS
SELECT ud.*, m.user_id IS NOT NULL AS is_moved
FROM etl.user_daily ud LEFT JOIN moved_users m USING (user_id);
ANALYZE user_days_after;
"""


async def run(cycle: Cycle) -> None:
    """The pipeline step: bring etl.user_daily up to date, leave the days before and after."""
    await refresh(cycle.conn, full=cycle.full)
    if cycle.full:
        cycle.result.anomalies += await mirror.record_orphan_bets(cycle.conn)


async def refresh(conn: asyncpg.Connection, *, full: bool) -> None:
    """Recompute etl.user_daily for the changed (user, day) pairs (all of them when full)."""
    await conn.execute(_SNAPSHOT.format(name="user_days_before"))
    if full:
        await conn.execute("TRUNCATE etl.user_daily")
        async with indexes_built_after(conn, "etl.user_daily"):
            await conn.execute(f"INSERT INTO etl.user_daily {_ACTIVITY_ALL}")
        # Every row is new: user_days_after is the whole table. changed_user_days stays as the
        # mirror left it (a full cycle's later steps take their users from ``moved_users`` and
        # ``etl.edges``).
        await conn.execute(_ALL_NEW)
        return
    await conn.execute(_MONEY_DAYS)
    await conn.execute(_BET_DAYS)
    await conn.execute(_SNAPSHOT.format(name="user_days_after"))
