"""CPA validation: the qualifying instant t* and the append-only validation ledger.

t* is the earliest deposit or bet instant at which every criterion holds counting only the
user's activity at or before it. Each criterion is monotone in time, so t* is the latest of
the three instants at which each one first holds:
- the approved deposit at which cumulative deposits first reach the minimum;
- the bet at which cumulative stake first reaches the minimum;
- the first bet of the N-th distinct local active day.
Events at the same instant count together (window frames include peers). A criterion with a
zero threshold holds from the start; if all are zero, t* is the user's first event.

A user validates once, ever, and only with an upline: one ledger row per upline level, with
the amount of the plan version of that affiliate in force at t*. Nothing here ever updates or
deletes a ledger row.

Leaves ``new_ledger_rows`` (the ledger rows to add to the figures: those written now, and on
a full load every ledger row), ``plan_version_ranges`` (each plan version's effective dates)
and ``affiliate_plan_ranges`` (each affiliate's own plan's effective dates). Its own working
tables: ``cpa_candidates`` and ``qualified_users`` (with t*).
"""

from __future__ import annotations

import asyncpg

from etl.cycle import Cycle

# Users to (re)consider: not yet in the ledger, with a p1, whose activity or upline changed.
_CANDIDATES = """
CREATE TEMP TABLE cpa_candidates ON COMMIT DROP AS
SELECT DISTINCT c.user_id
FROM (SELECT user_id FROM changed_user_days UNION SELECT user_id FROM moved_users {extra}) AS c
WHERE EXISTS (SELECT 1 FROM etl.user_upline u WHERE u.user_id = c.user_id AND u.level = 1)
  AND NOT EXISTS (SELECT 1 FROM affiliate_cpa_validations v WHERE v.referred_user_id = c.user_id);
ALTER TABLE cpa_candidates ADD PRIMARY KEY (user_id);
ANALYZE cpa_candidates;
"""

# Candidates whose all-time activity does not meet every criterion have no t* (each criterion
# is monotone in time): an incremental cycle drops them with one look at their per-day rows
# instead of running their deposits and bets through the windows below.
_HOPELESS = """
DELETE FROM cpa_candidates c
USING (SELECT min_deposits, min_stake, min_active_days FROM qualification_criteria_versions
       WHERE effective_from <= now()::date ORDER BY effective_from DESC LIMIT 1) AS crit
WHERE NOT (SELECT coalesce(sum(ud.deposits), 0) >= crit.min_deposits
                  AND coalesce(sum(ud.stake), 0) >= crit.min_stake
                  AND count(*) FILTER (WHERE ud.bet_count > 0) >= crit.min_active_days
           FROM etl.user_daily ud WHERE ud.user_id = c.user_id);
ANALYZE cpa_candidates;
"""

# t* from the per-day aggregates: the day on which a criterion is first met comes from
# etl.user_daily; only that day's bets are read to find the instant within it.
_QUALIFY = """
CREATE TEMP TABLE qualified_users ON COMMIT DROP AS
WITH crit AS (
    SELECT id, min_deposits, min_stake, min_active_days
    FROM qualification_criteria_versions
    WHERE effective_from <= now()::date
    ORDER BY effective_from DESC LIMIT 1
{history}), t_deposits AS (
    SELECT user_id, min(ts) AS t FROM deposits, crit
    WHERE cumulative >= crit.min_deposits GROUP BY user_id
), stake_day AS (
    SELECT DISTINCT ON (user_id) user_id, day, cumulative - stake AS before
    FROM bet_days, crit WHERE cumulative >= crit.min_stake
    ORDER BY user_id, day
), t_stake AS (
    SELECT sd.user_id, min(b.ts) AS t
    FROM stake_day sd CROSS JOIN crit
    CROSS JOIN LATERAL (
        SELECT x.criado_em AS ts, sum(x.valor_aposta) OVER (ORDER BY x.criado_em) AS running
        FROM etl.src_bets x
        WHERE x.user_id = sd.user_id
          AND x.criado_em >= sd.day::timestamptz AND x.criado_em < (sd.day + 1)::timestamptz
    ) AS b
    WHERE sd.before + b.running >= crit.min_stake
    GROUP BY sd.user_id
), t_days AS (
    SELECT user_id, first_bet_at AS t FROM bet_days, crit WHERE nth = crit.min_active_days
), t_first AS (
    SELECT user_id, min(ts) AS t
    FROM (SELECT user_id, ts FROM deposits UNION ALL SELECT user_id, first_bet_at FROM bet_days) e
    GROUP BY user_id
), firsts AS (
    SELECT c.user_id,
           CASE WHEN crit.min_deposits <= 0 THEN '-infinity'::timestamptz ELSE td.t END AS td,
           CASE WHEN crit.min_stake <= 0 THEN '-infinity'::timestamptz ELSE ts.t END AS ts,
           CASE WHEN crit.min_active_days <= 0 THEN '-infinity'::timestamptz ELSE ta.t END AS ta,
           tf.t AS tf
    FROM cpa_candidates c CROSS JOIN crit
    LEFT JOIN t_deposits td ON td.user_id = c.user_id
    LEFT JOIN t_stake ts ON ts.user_id = c.user_id
    LEFT JOIN t_days ta ON ta.user_id = c.user_id
    LEFT JOIN t_first tf ON tf.user_id = c.user_id
), instants AS MATERIALIZED (
    SELECT user_id,
           CASE WHEN greatest(td, ts, ta) = '-infinity'::timestamptz THEN tf
                ELSE greatest(td, ts, ta) END AS t_star
    FROM firsts
    WHERE td IS NOT NULL AND ts IS NOT NULL AND ta IS NOT NULL
), snap_deposits AS (
    SELECT i.user_id, max(d.cumulative) AS amount
    FROM instants i JOIN deposits d ON d.user_id = i.user_id AND d.ts <= i.t_star
    GROUP BY i.user_id
)
SELECT i.user_id, i.t_star, crit.id AS criteria_version_id,
       crit.min_deposits, crit.min_stake, crit.min_active_days,
       coalesce(sd.amount, 0) AS user_deposits,
       coalesce((SELECT sum(ud.stake) FROM etl.user_daily ud
                 WHERE ud.user_id = i.user_id AND ud.day < i.t_star::date), 0)
       + coalesce((SELECT sum(x.valor_aposta) FROM etl.src_bets x
                   WHERE x.user_id = i.user_id AND x.criado_em >= i.t_star::date::timestamptz
                     AND x.criado_em <= i.t_star), 0) AS user_bets,
       (SELECT count(*) FROM etl.user_daily ud
        WHERE ud.user_id = i.user_id AND ud.bet_count > 0
          AND ud.first_bet_at <= i.t_star)::int AS days_active
FROM instants i CROSS JOIN crit
LEFT JOIN snap_deposits sd ON sd.user_id = i.user_id
WHERE i.t_star IS NOT NULL
"""

# Each candidate's approved deposits (running total) and active days (running stake, rank):
# per candidate through an index when few, in one pass over everything when all are.
_HISTORY_FEW = """
), deposits AS MATERIALIZED (
    SELECT c.user_id, d.ts, d.cumulative
    FROM cpa_candidates c
    CROSS JOIN LATERAL (
        SELECT x.criado_em AS ts, sum(x.valor) OVER (ORDER BY x.criado_em) AS cumulative
        FROM etl.src_depositos x
        WHERE x.user_id = c.user_id AND x.ok AND x.status = 'aprovado'
    ) AS d
), bet_days AS MATERIALIZED (
    SELECT c.user_id, b.day, b.stake, b.first_bet_at, b.cumulative, b.nth
    FROM cpa_candidates c
    CROSS JOIN LATERAL (
        SELECT ud.day, ud.stake, ud.first_bet_at,
               sum(ud.stake) OVER (ORDER BY ud.day) AS cumulative,
               row_number() OVER (ORDER BY ud.day) AS nth
        FROM etl.user_daily ud
        WHERE ud.user_id = c.user_id AND ud.bet_count > 0
    ) AS b
"""

_HISTORY_ALL = """
), deposits AS MATERIALIZED (
    SELECT d.user_id, d.criado_em AS ts,
           sum(d.valor) OVER (PARTITION BY d.user_id ORDER BY d.criado_em) AS cumulative
    FROM etl.src_depositos d JOIN cpa_candidates c USING (user_id)
    WHERE d.ok AND d.status = 'aprovado'
), bet_days AS MATERIALIZED (
    SELECT ud.user_id, ud.day, ud.stake, ud.first_bet_at,
           sum(ud.stake) OVER w AS cumulative,
           row_number() OVER w AS nth
    FROM etl.user_daily ud JOIN cpa_candidates c USING (user_id)
    WHERE ud.bet_count > 0
    WINDOW w AS (PARTITION BY ud.user_id ORDER BY ud.day)
"""

_PLAN_RANGES = """
CREATE TEMP TABLE IF NOT EXISTS plan_version_ranges ON COMMIT DROP AS
SELECT v.id AS version_id, v.plan_id, v.effective_from,
       coalesce(lead(v.effective_from) OVER (PARTITION BY v.plan_id ORDER BY v.effective_from),
                'infinity'::date) AS effective_until,
       ARRAY[v.cpa_level_1, v.cpa_level_2, v.cpa_level_3, v.cpa_level_4, v.cpa_level_5]
           AS cpa_by_level,
       ARRAY[v.rev_share_level_1, v.rev_share_level_2, v.rev_share_level_3,
             v.rev_share_level_4, v.rev_share_level_5] AS rev_share_by_level
FROM commission_plan_versions v;

-- An affiliate's own plan from the day it was assigned; before that and elsewhere, the default.
CREATE TEMP TABLE IF NOT EXISTS affiliate_plan_ranges ON COMMIT DROP AS
SELECT h.affiliate_id, h.plan_id, h.effective_from,
       coalesce(lead(h.effective_from) OVER (PARTITION BY h.affiliate_id ORDER BY h.effective_from),
                'infinity'::date) AS effective_until
FROM affiliate_plan_history h;
ANALYZE affiliate_plan_ranges;
"""

_WRITE_LEDGER = """
CREATE TEMP TABLE new_ledger_rows ON COMMIT DROP AS
WITH inserted AS (
    INSERT INTO affiliate_cpa_validations
        (affiliate_id, referred_user_id, validation_date, validation_criteria, user_deposits,
         user_bets, days_active, cpa_level, cpa_amount, plan_version_id)
    SELECT u.ancestor_id, q.user_id, q.t_star,
           jsonb_build_object(
               'criteria_version_id', q.criteria_version_id,
               'min_deposits', q.min_deposits::text,
               'min_stake', q.min_stake::text,
               'min_active_days', q.min_active_days,
               'deposits', q.user_deposits::text,
               'stake', q.user_bets::text,
               'active_days', q.days_active),
           q.user_deposits, q.user_bets, q.days_active, u.level,
           p.cpa_by_level[u.level], p.version_id
    FROM qualified_users q
    JOIN etl.user_upline u ON u.user_id = q.user_id
    LEFT JOIN affiliate_plan_ranges ap
      ON ap.affiliate_id = u.ancestor_id
     AND q.t_star::date >= ap.effective_from AND q.t_star::date < ap.effective_until
    JOIN plan_version_ranges p
      ON p.plan_id = coalesce(ap.plan_id, (SELECT id FROM commission_plans WHERE is_default))
     AND q.t_star::date >= p.effective_from AND q.t_star::date < p.effective_until
    ON CONFLICT (referred_user_id, cpa_level) DO NOTHING
    RETURNING id, affiliate_id, referred_user_id, cpa_level, cpa_amount, validation_date
)
SELECT * FROM inserted
"""


# A full load emptied the derived tables: every ledger row contributes to them again.
_WHOLE_LEDGER = """
INSERT INTO new_ledger_rows
SELECT id, affiliate_id, referred_user_id, cpa_level, cpa_amount, validation_date
FROM affiliate_cpa_validations v
WHERE NOT EXISTS (SELECT 1 FROM new_ledger_rows n WHERE n.id = v.id)
"""


async def run(cycle: Cycle) -> None:
    """The pipeline step: write the ledger rows of the users that newly qualify."""
    conn, result = cycle.conn, cycle.result
    extra = ""
    if cycle.validate_network_of is not None:
        affiliate_id = int(cycle.validate_network_of)
        extra = f" UNION SELECT user_id FROM etl.user_upline WHERE ancestor_id = {affiliate_id}"
    result.validations = await validate(conn, full=cycle.full, extra_candidates=extra)
    result.new_validation_ids = [r[0] for r in await conn.fetch("SELECT id FROM new_ledger_rows")]
    if cycle.full:
        await conn.execute(_WHOLE_LEDGER)


async def validate(conn: asyncpg.Connection, *, full: bool, extra_candidates: str = "") -> int:
    """Write the ledger rows of every user that newly qualifies; returns rows written.

    Leaves ``new_ledger_rows`` with the rows written. ``extra_candidates`` is an extra
    ``UNION SELECT user_id FROM ...`` clause (the API's on-demand validation uses it).
    """
    extra = extra_candidates
    if full:
        extra += " UNION SELECT user_id FROM etl.edges"
    await conn.execute(_CANDIDATES.format(extra=extra))
    if not full:
        await conn.execute(_HOPELESS)
    history = _HISTORY_ALL if full else _HISTORY_FEW
    await conn.execute(_QUALIFY.replace("{history}", history.strip() + "\n"))
    await conn.execute(_PLAN_RANGES)
    await conn.execute(_WRITE_LEDGER)
    return await conn.fetchval("SELECT count(*) FROM new_ledger_rows")
