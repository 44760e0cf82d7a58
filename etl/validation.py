"""CPA validation: the qualifying instant t* and the append-only validation ledger.

t* is the earliest of the user's approved-deposit and bet instants t at which the criteria
version in force on t's local date holds, counting only the user's activity at or before t
(events at the same instant count together: window frames include peers). The version in force
when the ETL runs plays no part. A version with a window of N days counts only the activity in
[referral instant, referral instant + N x 24 h) and judges only instants inside it.

Per candidate and per version that can judge one of its instants, the instants it judges are a
range [lo, hi) (the version's local dates, cut to its window if it has one). Within one version
each criterion is monotone in time, so the version holds at every instant from g on, g being the
latest of the three instants at which each criterion first holds on the activity it counts:
- the approved deposit at which cumulative deposits first reach the minimum;
- the bet at which cumulative stake first reaches the minimum;
- the first bet of the N-th distinct local active day.
A criterion with a zero threshold holds from the start. The version's t* is g when g falls in
[lo, hi), else (g before lo) the user's first event in [lo, hi): a laxer version that starts at
midnight qualifies the user at its next deposit or bet. t* is the earliest over the versions.

The activity counted is either all of it or, under a window, what happened from the referral
instant on: two "counting scopes" (``counts_from``: -infinity or the referral instant). The
per-day aggregates of etl.user_daily serve both, but for the day the referral falls in, which a
window reads from the raw bets; the raw bets of the day a stake threshold is crossed are read
to find the instant within it. The end of a window needs no raw read: only instants before it
are judged, and the activity counted at an instant is what happened at or before it.

A user validates once, ever, and only with an upline: one ledger row per upline level, with
the amount of the plan version of that affiliate in force at t*, and the snapshot of the
activity the judging version counted at t*. Nothing here ever updates or deletes a ledger row.

Candidates: users with changed days or moved (a moved user's referral instant may have
changed), on demand an affiliate's network, on a full load everyone; and the users active on
or after the effective date of a criteria change this cycle applies (``config_changes``): that
change may make one of their instants a t*.

Leaves ``new_ledger_rows`` (the ledger rows to add to the figures: those written now, and on
a full load every ledger row), ``plan_version_ranges`` (each plan version's effective dates)
and ``affiliate_plan_ranges`` (each affiliate's own plan's effective dates). Its own working
tables: ``cpa_candidates`` (with the referral instant) and ``qualified_users`` (with t*).
"""

from __future__ import annotations

import asyncpg

from etl.cycle import Cycle

# Users to (re)consider: not yet in the ledger, with a p1, whose activity or upline changed;
# with their referral instant (the start of a window).
_CANDIDATES = """
CREATE TEMP TABLE cpa_candidates ON COMMIT DROP AS
SELECT c.user_id, e.referred_at
FROM (SELECT user_id FROM changed_user_days UNION SELECT user_id FROM moved_users {extra}) AS c
JOIN etl.edges e ON e.user_id = c.user_id
WHERE EXISTS (SELECT 1 FROM etl.user_upline u WHERE u.user_id = c.user_id AND u.level = 1)
  AND NOT EXISTS (SELECT 1 FROM affiliate_cpa_validations v WHERE v.referred_user_id = c.user_id);
ALTER TABLE cpa_candidates ADD PRIMARY KEY (user_id);
ANALYZE cpa_candidates;
"""

# The earliest effective date of the criteria changes this cycle applies (NULL: none).
_CRITERIA_CHANGED_FROM = "SELECT min(effective_from) FROM config_changes WHERE kind = 'criteria'"

# A criteria change effective on a day may make an instant on or after that day a t*: the users
# with activity from that day on (etl.user_daily's index on day) are candidates.
_ACTIVE_SINCE = " UNION SELECT user_id FROM etl.user_daily WHERE day >= '{day}'::date"

# Each criteria version with the local dates it is in force on, [effective_from, the next one's).
_VERSIONS = """
SELECT id, min_deposits, min_stake, min_active_days, window_days, effective_from,
       lead(effective_from, 1, 'infinity') OVER (ORDER BY effective_from) AS effective_until
FROM qualification_criteria_versions
"""

# Candidates hopeless under every version have no t*: an incremental cycle drops them with one
# look at their per-day rows instead of running their deposits and bets through the windows
# below. Under a version, the activity counted at any instant (in a window or not) is part of
# the user's all-time activity and each criterion is monotone, so a user whose all-time totals
# miss a version's thresholds, or whose first to last active day misses the version's dates,
# never meets it.
_HOPELESS = f"""
WITH versions AS MATERIALIZED ({_VERSIONS})
DELETE FROM cpa_candidates c
WHERE NOT EXISTS (
    SELECT 1
    FROM (SELECT coalesce(sum(ud.deposits), 0) AS deposits, coalesce(sum(ud.stake), 0) AS stake,
                 count(*) FILTER (WHERE ud.bet_count > 0) AS active_days,
                 min(ud.day) AS first_day, max(ud.day) AS last_day
          FROM etl.user_daily ud WHERE ud.user_id = c.user_id) AS t
    JOIN versions v
      ON t.deposits >= v.min_deposits AND t.stake >= v.min_stake
     AND t.active_days >= v.min_active_days
     AND v.effective_from <= t.last_day AND v.effective_until > t.first_day);
ANALYZE cpa_candidates;
"""

# t* from the per-day aggregates: the day on which a criterion is first met comes from
# etl.user_daily; only that day's bets are read to find the instant within it.
_QUALIFY = f"""
CREATE TEMP TABLE qualified_users ON COMMIT DROP AS
WITH versions AS MATERIALIZED ({_VERSIONS}
), pairs AS MATERIALIZED (
    -- Each candidate with each version that may judge one of its instants: the instants it
    -- judges are [lo, hi) (its dates, cut to its window); counts_from starts what it counts.
    SELECT c.user_id, v.id AS version_id, v.min_deposits, v.min_stake, v.min_active_days,
           v.window_days, r.counts_from, r.lo, r.hi
    FROM cpa_candidates c CROSS JOIN versions v
    CROSS JOIN LATERAL (
        SELECT CASE WHEN v.window_days IS NULL THEN '-infinity'::timestamptz
                    ELSE c.referred_at END AS counts_from,
               -- greatest/least skip NULLs: a version without a window is cut by its dates only
               greatest(v.effective_from::timestamptz,
                        CASE WHEN v.window_days IS NOT NULL THEN c.referred_at END) AS lo,
               least(v.effective_until::timestamptz,
                     c.referred_at + v.window_days * interval '24 hours') AS hi
    ) AS r
    CROSS JOIN LATERAL (  -- some activity on those dates (a LATERAL: one index probe a pair)
        SELECT 1 FROM etl.user_daily ud
        WHERE ud.user_id = c.user_id AND ud.day >= r.lo::date AND ud.day::timestamptz < r.hi
        LIMIT 1
    ) AS active
    WHERE r.lo < r.hi
), scopes AS MATERIALIZED (
    SELECT DISTINCT user_id, counts_from FROM pairs
), first_days AS MATERIALIZED (
    -- A window opens at the referral instant: its first local day counts the bets from then on.
    SELECT s.user_id, s.counts_from, ud.day, f.stake, f.first_bet_at
    FROM scopes s
    JOIN etl.user_daily ud
      ON ud.user_id = s.user_id AND ud.day = s.counts_from::date AND ud.bet_count > 0
    CROSS JOIN LATERAL (
        SELECT sum(x.valor_aposta) AS stake, min(x.criado_em) AS first_bet_at
        FROM etl.src_bets x
        WHERE x.user_id = s.user_id AND x.criado_em >= s.counts_from
          AND x.criado_em < (ud.day + 1)::timestamptz
    ) AS f
    WHERE s.counts_from > '-infinity'::timestamptz AND f.first_bet_at IS NOT NULL
{{history}}), dep_marks AS (
    SELECT p.user_id, p.version_id,
           min(d.ts) FILTER (WHERE d.cumulative >= p.min_deposits) AS t_deposits,
           min(d.ts) FILTER (WHERE d.ts >= p.lo) AS first_deposit
    FROM pairs p
    JOIN deposits d ON d.user_id = p.user_id AND d.counts_from = p.counts_from
    GROUP BY p.user_id, p.version_id
), bet_marks AS (
    SELECT p.user_id, p.version_id,
           min(b.first_bet_at) FILTER (WHERE b.nth = p.min_active_days) AS t_days,
           min(b.day) FILTER (WHERE b.cumulative >= p.min_stake) AS stake_day,
           min(b.first_bet_at) FILTER (WHERE b.first_bet_at >= p.lo) AS first_bet
    FROM pairs p
    JOIN bet_days b ON b.user_id = p.user_id AND b.counts_from = p.counts_from
    GROUP BY p.user_id, p.version_id
), t_stake AS (
    -- The bet within the crossing day at which the cumulative stake reaches the minimum.
    SELECT p.user_id, p.version_id, min(x.ts) AS t
    FROM pairs p
    JOIN bet_marks m ON m.user_id = p.user_id AND m.version_id = p.version_id
    JOIN bet_days b
      ON b.user_id = p.user_id AND b.counts_from = p.counts_from AND b.day = m.stake_day
    CROSS JOIN LATERAL (
        SELECT y.criado_em AS ts, sum(y.valor_aposta) OVER (ORDER BY y.criado_em) AS running
        FROM etl.src_bets y
        WHERE y.user_id = p.user_id
          AND y.criado_em >= greatest(b.day::timestamptz, p.counts_from)
          AND y.criado_em < (b.day + 1)::timestamptz
    ) AS x
    WHERE p.min_stake > 0 AND b.cumulative - b.stake + x.running >= p.min_stake
    GROUP BY p.user_id, p.version_id
), judged AS (
    SELECT p.*,
           CASE WHEN p.min_deposits <= 0 THEN '-infinity'::timestamptz ELSE dm.t_deposits END AS td,
           CASE WHEN p.min_stake <= 0 THEN '-infinity'::timestamptz ELSE ts.t END AS ts,
           CASE WHEN p.min_active_days <= 0 THEN '-infinity'::timestamptz ELSE bm.t_days END AS ta,
           least(dm.first_deposit, bm.first_bet) AS first_event
    FROM pairs p
    LEFT JOIN dep_marks dm ON dm.user_id = p.user_id AND dm.version_id = p.version_id
    LEFT JOIN bet_marks bm ON bm.user_id = p.user_id AND bm.version_id = p.version_id
    LEFT JOIN t_stake ts ON ts.user_id = p.user_id AND ts.version_id = p.version_id
), instants AS (
    -- From g = greatest(td, ts, ta) on the version holds: its t* is the first event in
    -- [lo, hi) at or after g (g itself is an event unless every threshold is zero).
    SELECT j.*,
           CASE WHEN greatest(j.td, j.ts, j.ta) >= j.lo THEN greatest(j.td, j.ts, j.ta)
                ELSE j.first_event END AS t_star
    FROM judged j
    WHERE j.td IS NOT NULL AND j.ts IS NOT NULL AND j.ta IS NOT NULL
), chosen AS MATERIALIZED (
    SELECT DISTINCT ON (user_id) *
    FROM instants WHERE t_star < hi
    ORDER BY user_id, t_star
), snap_deposits AS (
    SELECT c.user_id, max(d.cumulative) AS amount
    FROM chosen c
    JOIN deposits d ON d.user_id = c.user_id AND d.counts_from = c.counts_from AND d.ts <= c.t_star
    GROUP BY c.user_id
), snap_days AS (
    SELECT c.user_id,
           max(b.cumulative) FILTER (WHERE b.day < c.t_star::date) AS stake_before,
           count(*) FILTER (WHERE b.first_bet_at <= c.t_star) AS active_days
    FROM chosen c
    JOIN bet_days b ON b.user_id = c.user_id AND b.counts_from = c.counts_from
    GROUP BY c.user_id
)
SELECT c.user_id, c.t_star, c.version_id AS criteria_version_id,
       c.min_deposits, c.min_stake, c.min_active_days, c.window_days,
       coalesce(sd.amount, 0) AS user_deposits,
       coalesce(sy.stake_before, 0)
       + coalesce((SELECT sum(x.valor_aposta) FROM etl.src_bets x
                   WHERE x.user_id = c.user_id
                     AND x.criado_em >= greatest(c.t_star::date::timestamptz, c.counts_from)
                     AND x.criado_em <= c.t_star), 0) AS user_bets,
       coalesce(sy.active_days, 0)::int AS days_active
FROM chosen c
LEFT JOIN snap_deposits sd ON sd.user_id = c.user_id
LEFT JOIN snap_days sy ON sy.user_id = c.user_id
"""

# Each scope's approved deposits (running total) and active days (running stake, rank): per
# scope through an index when few, in one pass over everything when all are.
_HISTORY_FEW = """
), deposits AS MATERIALIZED (
    SELECT s.user_id, s.counts_from, d.ts, d.cumulative
    FROM scopes s
    CROSS JOIN LATERAL (
        SELECT x.criado_em AS ts, sum(x.valor) OVER (ORDER BY x.criado_em) AS cumulative
        FROM etl.src_depositos x
        WHERE x.user_id = s.user_id AND x.ok AND x.status = 'aprovado'
          AND x.criado_em >= s.counts_from
    ) AS d
), bet_days AS MATERIALIZED (
    SELECT s.user_id, s.counts_from, b.day, b.stake, b.first_bet_at,
           sum(b.stake) OVER w AS cumulative, row_number() OVER w AS nth
    FROM scopes s
    CROSS JOIN LATERAL (
        SELECT ud.day, ud.stake, ud.first_bet_at
        FROM etl.user_daily ud
        WHERE ud.user_id = s.user_id AND ud.bet_count > 0 AND ud.day > s.counts_from::date
        UNION ALL
        SELECT f.day, f.stake, f.first_bet_at
        FROM first_days f WHERE f.user_id = s.user_id AND f.counts_from = s.counts_from
    ) AS b
    WINDOW w AS (PARTITION BY s.user_id, s.counts_from ORDER BY b.day)
"""

_HISTORY_ALL = """
), deposits AS MATERIALIZED (
    SELECT d.user_id, s.counts_from, d.criado_em AS ts,
           sum(d.valor) OVER (PARTITION BY d.user_id, s.counts_from ORDER BY d.criado_em)
               AS cumulative
    FROM etl.src_depositos d JOIN scopes s USING (user_id)
    WHERE d.ok AND d.status = 'aprovado' AND d.criado_em >= s.counts_from
), bet_days AS MATERIALIZED (
    SELECT b.user_id, b.counts_from, b.day, b.stake, b.first_bet_at,
           sum(b.stake) OVER w AS cumulative, row_number() OVER w AS nth
    FROM (SELECT ud.user_id, s.counts_from, ud.day, ud.stake, ud.first_bet_at
          FROM etl.user_daily ud JOIN scopes s USING (user_id)
          WHERE ud.bet_count > 0 AND ud.day > s.counts_from::date
          UNION ALL
          SELECT user_id, counts_from, day, stake, first_bet_at FROM first_days) AS b
    WINDOW w AS (PARTITION BY b.user_id, b.counts_from ORDER BY b.day)
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
               'window_days', q.window_days,
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
    elif (since := await conn.fetchval(_CRITERIA_CHANGED_FROM)) is not None:
        extra += _ACTIVE_SINCE.format(day=since.isoformat())
    await conn.execute(_CANDIDATES.format(extra=extra))
    history = _HISTORY_ALL if full else _HISTORY_FEW
    # (No JIT here but in a full load: etl.cycle turns it off for the other cycles.)
    if not full:
        await conn.execute(_HOPELESS)
    await conn.execute(_QUALIFY.replace("{history}", history.strip() + "\n"))
    await conn.execute(_PLAN_RANGES)
    await conn.execute(_WRITE_LEDGER)
    return await conn.fetchval("SELECT count(*) FROM new_ledger_rows")
