"""Accrual: per affiliate, level and period figures, with the daily REV accrual.

Everything an affiliate earns or sees is a sum of per-(user, day) contributions routed
through the user's upline: ``figure(A, L, day) = sum over U in N_L(A) of activity(U, day)``.
A cycle computes the change of those sums exactly, as (new contributions through the new
upline) minus (old contributions through the old upline) over only the users and days that
changed, plus the new ledger rows. The daily rows take the change, their REV is recomputed
from their GGR (``round(rate * ggr, 2)`` with the rate in force that day), and the weekly,
monthly and yearly rows take the daily changes, REV included, so every larger REV figure is
exactly the sum of the daily ones.

Leaves ``period_deltas(affiliate_id, period_type, period_start, level, ...)`` with every
period row that changed, for the publishers. Its own working tables: ``daily_deltas`` (the
change of each daily row) and ``daily_rows_after`` (those rows after it, REV recomputed).
"""

from __future__ import annotations

import asyncpg

from etl.bulk import indexes_built_after, nested_loops
from etl.cycle import Cycle

_FIGURES = (
    "new_referrals",
    "deposits",
    "deposit_count",
    "withdrawals",
    "withdrawal_count",
    "stake",
    "win",
    "bet_count",
    "cpa",
    "validations",
)
_COUNTS = ("new_referrals", "deposit_count", "withdrawal_count", "bet_count", "validations")

_DELTA = """
CREATE TEMP TABLE daily_deltas ON COMMIT DROP AS
SELECT affiliate_id, level, day,
       sum(new_referrals)::int AS new_referrals, sum(deposits) AS deposits,
       sum(deposit_count)::int AS deposit_count, sum(withdrawals) AS withdrawals,
       sum(withdrawal_count)::int AS withdrawal_count, sum(stake) AS stake, sum(win) AS win,
       sum(bet_count)::int AS bet_count, sum(cpa) AS cpa, sum(validations)::int AS validations
FROM (
    -- activity now, through the upline now
    SELECT u.ancestor_id AS affiliate_id, u.level, n.day, 0 AS new_referrals,
           n.deposits, n.deposit_count, n.withdrawals, n.withdrawal_count,
           n.stake, n.win, n.bet_count, 0::numeric AS cpa, 0 AS validations
    FROM user_days_after n JOIN etl.user_upline u ON u.user_id = n.user_id
    UNION ALL
    -- activity before, through the upline before (moved users) or the unchanged one
    SELECT u.ancestor_id, u.level, o.day, 0, -o.deposits, -o.deposit_count, -o.withdrawals,
           -o.withdrawal_count, -o.stake, -o.win, -o.bet_count, 0, 0
    FROM user_days_before o JOIN upline_before u ON u.user_id = o.user_id
    WHERE o.is_moved
    UNION ALL
    SELECT u.ancestor_id, u.level, o.day, 0, -o.deposits, -o.deposit_count, -o.withdrawals,
           -o.withdrawal_count, -o.stake, -o.win, -o.bet_count, 0, 0
    FROM user_days_before o JOIN etl.user_upline u ON u.user_id = o.user_id
    WHERE NOT o.is_moved
    UNION ALL
    -- the referral itself: one new referral on the local day of tracked.criado_em
    SELECT u.ancestor_id, u.level, e.referred_at::date, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0
    FROM moved_users m JOIN etl.edges e ON e.user_id = m.user_id
    JOIN etl.user_upline u ON u.user_id = m.user_id
    UNION ALL
    SELECT u.ancestor_id, u.level, j.referred_at::date, -1, 0, 0, 0, 0, 0, 0, 0, 0, 0
    FROM referral_dates_before j JOIN upline_before u ON u.user_id = j.user_id
    UNION ALL
    -- CPA is where the ledger put it, forever
    SELECT affiliate_id, cpa_level, validation_date::date, 0, 0, 0, 0, 0, 0, 0, 0,
           cpa_amount, 1
    FROM new_ledger_rows
) AS contributions
GROUP BY affiliate_id, level, day
"""

# The daily rows after the change, with REV recomputed from their new GGR at the rate of
# the affiliate's plan version in force that day.
_DAILY = """
CREATE TEMP TABLE daily_rows_after ON COMMIT DROP AS
WITH merged AS (
    SELECT d.affiliate_id, d.level, d.day,
           {after},
           coalesce(o.rev, 0) AS old_rev
    FROM daily_deltas d
    LEFT JOIN etl.affiliate_level_periods o
      ON o.affiliate_id = d.affiliate_id AND o.period_type = 'daily'
     AND o.period_start = d.day AND o.level = d.level
)
SELECT m.*,
       CASE WHEN m.bet_count > 0
            THEN round(p.rev_share_by_level[m.level] * (m.stake - m.win), 2)
            ELSE 0 END::numeric(18,2) AS rev
FROM merged m
-- The plan the affiliate was on that day (its own from its assignment date, else the default)
-- and that plan's version in force that day.
LEFT JOIN affiliate_plan_ranges ap
  ON ap.affiliate_id = m.affiliate_id AND m.day >= ap.effective_from AND m.day < ap.effective_until
-- LEFT: a day no plan version covers leaves REV NULL and the cycle fails loudly (NOT NULL).
LEFT JOIN plan_version_ranges p
  ON p.plan_id = coalesce(ap.plan_id, (SELECT id FROM commission_plans WHERE is_default))
 AND m.day >= p.effective_from AND m.day < p.effective_until;
ANALYZE daily_rows_after;

CREATE TEMP TABLE period_deltas ON COMMIT DROP AS
SELECT d.affiliate_id, 'daily'::text AS period_type, d.day AS period_start, d.level,
       {delta_cols}, a.rev - a.old_rev AS rev
FROM daily_deltas d JOIN daily_rows_after a USING (affiliate_id, level, day);
"""

_STORE_DAILY = """
DELETE FROM etl.affiliate_level_periods t USING daily_rows_after a
WHERE t.affiliate_id = a.affiliate_id AND t.period_type = 'daily'
  AND t.period_start = a.day AND t.level = a.level;

INSERT INTO etl.affiliate_level_periods
    (affiliate_id, period_type, period_start, level, {figures}, rev)
SELECT affiliate_id, 'daily', day, level, {figures}, rev
FROM daily_rows_after
WHERE {alive}{key_order};
"""

_ROLLUP_DELTA = """
INSERT INTO period_deltas
SELECT affiliate_id, p.period_type, date_trunc(p.unit, period_start::timestamp)::date, level,
       {sums}, sum(rev)
FROM period_deltas
CROSS JOIN (VALUES ('weekly', 'week'), ('monthly', 'month'), ('yearly', 'year')) AS p(period_type, unit)
WHERE period_deltas.period_type = 'daily'
GROUP BY affiliate_id, p.period_type, 3, level;
ANALYZE period_deltas;
"""

# A full load: every period row is new, nothing to accumulate into.
_STORE_ROLLUP_FULL = """
INSERT INTO etl.affiliate_level_periods
    (affiliate_id, period_type, period_start, level, {figures}, rev)
SELECT affiliate_id, period_type, period_start, level, {figures}, rev
FROM period_deltas WHERE period_type <> 'daily' AND ({alive});
"""

_ROLLUP = """
INSERT INTO etl.affiliate_level_periods AS t
    (affiliate_id, period_type, period_start, level, {figures}, rev)
SELECT affiliate_id, period_type, period_start, level, {figures}, rev
FROM period_deltas WHERE period_type <> 'daily'
ORDER BY affiliate_id, period_type, period_start, level
ON CONFLICT (affiliate_id, period_type, period_start, level) DO UPDATE SET
    {accumulate}, rev = t.rev + EXCLUDED.rev;

DELETE FROM etl.affiliate_level_periods t USING period_deltas d
WHERE d.period_type <> 'daily' AND t.affiliate_id = d.affiliate_id
  AND t.period_type = d.period_type AND t.period_start = d.period_start AND t.level = d.level
  AND NOT ({alive_t});
"""


# An incremental cycle writes its rows in key order: the rows of one affiliate share index
# pages, written while they are still in the buffer cache (in hash order, a page could be
# evicted and read again between two of them; a cache that holds less of a larger database
# makes that more likely). A full load builds the indexes after, so order is no matter there.
_KEY_ORDER = "\nORDER BY affiliate_id, day, level"


def _sql(template: str, *, full: bool = True) -> str:
    figures = ", ".join(_FIGURES)
    return template.format(
        key_order="" if full else _KEY_ORDER,
        figures=figures,
        after=", ".join(f"coalesce(o.{f}, 0) + d.{f} AS {f}" for f in _FIGURES),
        alive=" OR ".join(f"{c} > 0" for c in _COUNTS),
        alive_t=" OR ".join(f"t.{c} > 0" for c in _COUNTS),
        delta_cols=", ".join(f"d.{f}" for f in _FIGURES),
        sums=", ".join(f"sum({f})" for f in _FIGURES),
        accumulate=", ".join(f"{f} = t.{f} + EXCLUDED.{f}" for f in _FIGURES),
    )


# The plan changes this cycle applies (etl/config_changes.py) may reach days already derived:
# those daily rows are re-rated (REV recomputed at the rate now in force for the day), as a full
# recompute would. An assignment re-rates its affiliate's days, a plan version everyone's.
_PLAN_CHANGED = (
    "SELECT EXISTS (SELECT 1 FROM config_changes WHERE kind IN ('plan_version', 'plan_assignment'))"
)

# Only when there is one: the join below, planned against an empty temp table nobody has
# analysed, scans every daily row (130 ms of a 15-minute cycle at seed scale).
_RERATE = """
INSERT INTO daily_deltas
SELECT DISTINCT l.affiliate_id, l.level, l.period_start, {zeros}
FROM config_changes c
JOIN etl.affiliate_level_periods l
  ON l.period_type = 'daily' AND l.period_start >= c.effective_from AND l.bet_count > 0
 AND (c.affiliate_id IS NULL OR l.affiliate_id = c.affiliate_id)
WHERE c.kind IN ('plan_version', 'plan_assignment')
  AND NOT EXISTS (SELECT 1 FROM daily_deltas d WHERE d.affiliate_id = l.affiliate_id
                  AND d.level = l.level AND d.day = l.period_start)
"""


async def run(cycle: Cycle) -> None:
    """The pipeline step: apply the cycle's changes to the period rows, leave period_deltas."""
    await accrue(cycle.conn, full=cycle.full)


async def accrue(conn: asyncpg.Connection, *, full: bool = False) -> None:
    """Apply this cycle's contribution changes to every period row they touch."""
    if full:
        await conn.execute(_DELTA)
    else:
        async with nested_loops(conn):  # the changed users' uplines, by index
            await conn.execute(_DELTA)
    if not full and await conn.fetchval(_PLAN_CHANGED):
        await conn.execute(_RERATE.replace("{zeros}", ", ".join("0" for _ in _FIGURES)))
    await conn.execute("ANALYZE daily_deltas")
    await conn.execute(_sql(_DAILY))
    await conn.execute(_sql(_ROLLUP_DELTA))
    if full:
        async with indexes_built_after(conn, "etl.affiliate_level_periods"):
            await conn.execute(_sql(_STORE_DAILY))
            await conn.execute(_sql(_STORE_ROLLUP_FULL))
    else:
        await conn.execute(_sql(_STORE_DAILY, full=False))
        await conn.execute(_sql(_ROLLUP))
