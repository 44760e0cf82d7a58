"""Publish: the robust tables clients read, rebuilt only where this cycle changed them.

- ``affiliate_periodic_summaries`` for every (affiliate, period) in ``period_deltas``;
- ``affiliate_mlm_structure`` and ``affiliates`` for every touched affiliate, and the ranks;
- ``affiliate_referrals`` for every user that moved, changed activity or validated.

Its working tables are its own: ``touched_periods``, ``touched_affiliates`` (affiliates whose
row may change), ``affiliates_to_publish`` (those that are affiliates), ``former_affiliates``
(those that no longer are), ``ranked_before`` (the touched affiliates' ranked totals before
this cycle), ``rank_changes`` (how many active affiliates each total gained or lost),
``current_ranks`` (a full load's ranks) and ``referrals_to_rebuild`` (an incremental cycle's).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from etl.bulk import indexes_built_after, nested_loops, whole_table_scans
from etl.cycle import Cycle

# Every level key is present: levels without activity show zeros.
_ZERO_LEVELS = json.dumps(
    {
        str(level): dict.fromkeys(("deposits", "bets", "ggr", "cpa", "rev"), "0.00") | {"new_referrals": 0}
        for level in range(1, 6)
    }
)

_TOUCHED_PERIODS = """
CREATE TEMP TABLE touched_periods ON COMMIT DROP AS
SELECT DISTINCT affiliate_id, period_type, period_start FROM period_deltas
ORDER BY affiliate_id, period_type, period_start;
ANALYZE touched_periods;

DELETE FROM affiliate_periodic_summaries s USING touched_periods t
WHERE s.affiliate_id = t.affiliate_id AND s.period_type = t.period_type
  AND s.period_start = t.period_start;
"""

_TOUCHED_LEVEL_ROWS = """(
    SELECT l.* FROM touched_periods t
    JOIN etl.affiliate_level_periods l USING (affiliate_id, period_type, period_start)
)"""

_SUMMARIES = """
INSERT INTO affiliate_periodic_summaries
    (affiliate_id, period_type, period_start, new_referrals, validated_referrals,
     total_deposits, total_bets, total_ggr, cpa_earned, rev_earned, level_breakdown)
SELECT l.affiliate_id, l.period_type, l.period_start,
       coalesce(sum(l.new_referrals) FILTER (WHERE l.level = 1), 0),
       coalesce(sum(l.validations) FILTER (WHERE l.level = 1), 0),
       sum(l.deposits), sum(l.stake), sum(l.stake - l.win), sum(l.cpa), sum(l.rev),
       -- Built as text and parsed once: several times cheaper than jsonb_object_agg here.
       '{zero_levels}'::jsonb || ('{' || string_agg(
           '"' || l.level || '": {"new_referrals": ' || l.new_referrals
           || ', "deposits": "' || l.deposits || '", "bets": "' || l.stake
           || '", "ggr": "' || (l.stake - l.win) || '", "cpa": "' || l.cpa
           || '", "rev": "' || l.rev || '"}', ', ') || '}')::jsonb
FROM {source} AS l
GROUP BY l.affiliate_id, l.period_type, l.period_start
HAVING sum(l.new_referrals + l.deposit_count + l.bet_count + l.validations) > 0
{order}"""

# Affiliates whose row may change: activity, ledger, profile, or being someone's p1.
_TOUCHED_AFFILIATES = """
CREATE TEMP TABLE touched_affiliates ON COMMIT DROP AS
SELECT affiliate_id FROM period_deltas
UNION SELECT user_id FROM changed_profiles
UNION SELECT referrer_id FROM edges_before
UNION SELECT e.referrer_id FROM etl.edges e JOIN changed_edge_users r USING (user_id)
UNION SELECT affiliate_id FROM new_ledger_rows;
ALTER TABLE touched_affiliates ADD PRIMARY KEY (affiliate_id);
ANALYZE touched_affiliates;
"""

_MEMBERSHIP = """
CREATE TEMP TABLE affiliates_to_publish ON COMMIT DROP AS
SELECT t.affiliate_id
FROM touched_affiliates t
JOIN etl.src_cadastro c ON c.id = t.affiliate_id
WHERE coalesce(c.afiliado, false)
   OR EXISTS (SELECT 1 FROM etl.edges e WHERE e.referrer_id = t.affiliate_id)
   OR EXISTS (SELECT 1 FROM affiliate_cpa_validations v WHERE v.affiliate_id = t.affiliate_id);
ANALYZE affiliates_to_publish;

-- Touched affiliates that left the set (a few at most): their rows go.
CREATE TEMP TABLE former_affiliates ON COMMIT DROP AS
SELECT affiliate_id FROM touched_affiliates EXCEPT SELECT affiliate_id FROM affiliates_to_publish;
DELETE FROM affiliates WHERE affiliate_id = ANY (ARRAY(SELECT affiliate_id FROM former_affiliates));
DELETE FROM affiliate_mlm_structure
WHERE affiliate_id = ANY (ARRAY(SELECT affiliate_id FROM former_affiliates));
"""

_LEVEL = "coalesce(sum({col}) FILTER (WHERE l.level = {n}), 0)"

_MLM = """
INSERT INTO affiliate_mlm_structure AS m (affiliate_id, {columns}, total_network_size, updated_at)
SELECT s.affiliate_id, {values}, coalesce(sum(l.new_referrals), 0), now()
FROM affiliates_to_publish s
LEFT JOIN etl.affiliate_level_periods l
  ON l.affiliate_id = s.affiliate_id AND l.period_type = 'yearly'
GROUP BY s.affiliate_id
ORDER BY s.affiliate_id
ON CONFLICT (affiliate_id) DO UPDATE SET {updates}, total_network_size = EXCLUDED.total_network_size,
    updated_at = EXCLUDED.updated_at
WHERE ROW({current}) IS DISTINCT FROM ROW({excluded})
"""

_AFFILIATES = """
INSERT INTO affiliates AS a
    (affiliate_id, name, email, phone, status, is_flagged, total_referrals,
     total_validated_referrals, total_deposits, total_withdrawals, total_bets, total_ggr,
     total_cpa_earned, total_rev_earned, total_network_size, registered_at, updated_at)
SELECT s.affiliate_id, coalesce(c.nome, ''), c.email, c.telefone,
       CASE c.status WHEN 'ativo' THEN 'active' WHEN 'suspenso' THEN 'suspended'
                     ELSE 'inactive' END,
       coalesce(c.afiliado, false),
       coalesce(sum(l.new_referrals) FILTER (WHERE l.level = 1), 0),
       coalesce(sum(l.validations) FILTER (WHERE l.level = 1), 0),
       coalesce(sum(l.deposits), 0), coalesce(sum(l.withdrawals), 0),
       coalesce(sum(l.stake), 0), coalesce(sum(l.stake - l.win), 0),
       coalesce(sum(l.cpa), 0), coalesce(sum(l.rev), 0),
       coalesce(sum(l.new_referrals), 0), c.criado_em, now()
FROM affiliates_to_publish s
JOIN etl.src_cadastro c ON c.id = s.affiliate_id
LEFT JOIN etl.affiliate_level_periods l
  ON l.affiliate_id = s.affiliate_id AND l.period_type = 'yearly'
GROUP BY s.affiliate_id, c.id
ORDER BY s.affiliate_id
ON CONFLICT (affiliate_id) DO UPDATE SET
    name = EXCLUDED.name, email = EXCLUDED.email, phone = EXCLUDED.phone,
    status = EXCLUDED.status, is_flagged = EXCLUDED.is_flagged,
    total_referrals = EXCLUDED.total_referrals,
    total_validated_referrals = EXCLUDED.total_validated_referrals,
    total_deposits = EXCLUDED.total_deposits, total_withdrawals = EXCLUDED.total_withdrawals,
    total_bets = EXCLUDED.total_bets, total_ggr = EXCLUDED.total_ggr,
    total_cpa_earned = EXCLUDED.total_cpa_earned, total_rev_earned = EXCLUDED.total_rev_earned,
    total_network_size = EXCLUDED.total_network_size, registered_at = EXCLUDED.registered_at,
    updated_at = EXCLUDED.updated_at
WHERE ROW(a.name, a.email, a.phone, a.status, a.is_flagged, a.total_referrals,
          a.total_validated_referrals, a.total_deposits, a.total_withdrawals, a.total_bets,
          a.total_ggr, a.total_cpa_earned, a.total_rev_earned, a.total_network_size,
          a.registered_at)
      IS DISTINCT FROM
      ROW(EXCLUDED.name, EXCLUDED.email, EXCLUDED.phone, EXCLUDED.status, EXCLUDED.is_flagged,
          EXCLUDED.total_referrals, EXCLUDED.total_validated_referrals, EXCLUDED.total_deposits,
          EXCLUDED.total_withdrawals, EXCLUDED.total_bets, EXCLUDED.total_ggr,
          EXCLUDED.total_cpa_earned, EXCLUDED.total_rev_earned, EXCLUDED.total_network_size,
          EXCLUDED.registered_at)
"""

# Ranks among active affiliates, highest first, ties sharing a rank: the rank of each distinct
# total is 1 + the number of active affiliates above it (affiliates_ranked reads them), so with
# each total's number of active holders stored beside it (migration 0011) a rank is a sum over
# the few hundred distinct totals, never a count over every affiliate.
_RANK_OF_VALUE = """(1 + coalesce(sum(holders) OVER (PARTITION BY metric ORDER BY value DESC
                                  ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0))::int"""

# A full load counts the holders of every total (the table was emptied with the others).
_RANKS = f"""
CREATE TEMP TABLE current_ranks ON COMMIT DROP AS
SELECT metric, value, holders, {_RANK_OF_VALUE} AS rank
FROM (SELECT 'cpa'::text AS metric, total_cpa_earned AS value, count(*)::int AS holders
      FROM affiliates WHERE status = 'active' GROUP BY total_cpa_earned
      UNION ALL
      SELECT 'referrals', total_validated_referrals, count(*)::int
      FROM affiliates WHERE status = 'active' GROUP BY total_validated_referrals) AS v;

DELETE FROM affiliate_rank_values r
WHERE NOT EXISTS (SELECT 1 FROM current_ranks n WHERE n.metric = r.metric AND n.value = r.value);

INSERT INTO affiliate_rank_values AS r (metric, value, rank, holders)
SELECT metric, value, rank, holders FROM current_ranks
ON CONFLICT (metric, value) DO UPDATE SET rank = EXCLUDED.rank, holders = EXCLUDED.holders
WHERE (r.rank, r.holders) IS DISTINCT FROM (EXCLUDED.rank, EXCLUDED.holders);
"""

# An incremental cycle: the ranked totals of the touched affiliates that are active, before the
# cycle rewrites their rows (taken before former affiliates' rows go). Only touched affiliates'
# rows change, so the holders of each total move by what these rows and the same rows after
# say; the ranks move with them.
_RANKED_BEFORE = """
CREATE TEMP TABLE ranked_before ON COMMIT DROP AS
SELECT a.total_cpa_earned, a.total_validated_referrals
FROM touched_affiliates t JOIN affiliates a USING (affiliate_id)
WHERE a.status = 'active'
"""

_RANK_CHANGES = """
CREATE TEMP TABLE rank_changes ON COMMIT DROP AS
SELECT metric, value, sum(change)::int AS change
FROM (SELECT 'cpa'::text AS metric, total_cpa_earned AS value, -1 AS change FROM ranked_before
      UNION ALL
      SELECT 'referrals', total_validated_referrals, -1 FROM ranked_before
      UNION ALL
      SELECT 'cpa', a.total_cpa_earned, 1
      FROM touched_affiliates t JOIN affiliates a USING (affiliate_id) WHERE a.status = 'active'
      UNION ALL
      SELECT 'referrals', a.total_validated_referrals, 1
      FROM touched_affiliates t JOIN affiliates a USING (affiliate_id) WHERE a.status = 'active'
     ) AS c
GROUP BY metric, value
HAVING sum(change) <> 0
"""

# A total new to the table starts with rank 0 (no rank is 0), so the last statement ranks it.
_APPLY_RANK_CHANGES = f"""
INSERT INTO affiliate_rank_values AS r (metric, value, rank, holders)
SELECT metric, value, 0, change FROM rank_changes
ON CONFLICT (metric, value) DO UPDATE SET holders = r.holders + EXCLUDED.holders;

DELETE FROM affiliate_rank_values r USING rank_changes c
WHERE r.metric = c.metric AND r.value = c.value AND r.holders = 0;

UPDATE affiliate_rank_values r SET rank = n.rank
FROM (SELECT metric, value, {_RANK_OF_VALUE} AS rank
      FROM affiliate_rank_values
      WHERE metric IN (SELECT metric FROM rank_changes)) AS n
WHERE r.metric = n.metric AND r.value = n.value AND r.rank <> n.rank;
"""

# Moved and newly validated users get their rows rebuilt; users whose activity changed
# only get their totals refreshed in place.
_REFERRALS = """
CREATE TEMP TABLE referrals_to_rebuild ON COMMIT DROP AS
SELECT user_id FROM moved_users UNION SELECT referred_user_id FROM new_ledger_rows;
ALTER TABLE referrals_to_rebuild ADD PRIMARY KEY (user_id);
ANALYZE referrals_to_rebuild;

DELETE FROM affiliate_referrals r USING referrals_to_rebuild u WHERE r.referred_id = u.user_id;

INSERT INTO affiliate_referrals
    (referrer_id, referred_id, mlm_level, referral_date, status, validation_date,
     total_deposits, total_bets, cpa_amount)
SELECT up.ancestor_id, up.user_id, up.level, e.referred_at,
       CASE WHEN v.validation_date IS NULL THEN 'pending' ELSE 'validated' END,
       v.validation_date, coalesce(t.deposits, 0), coalesce(t.stake, 0),
       coalesce(l.cpa_amount, 0)
FROM referrals_to_rebuild ru
JOIN etl.user_upline up ON up.user_id = ru.user_id
JOIN etl.edges e ON e.user_id = ru.user_id
CROSS JOIN LATERAL (
    SELECT sum(ud.deposits) AS deposits, sum(ud.stake) AS stake
    FROM etl.user_daily ud WHERE ud.user_id = ru.user_id
) AS t
LEFT JOIN LATERAL (
    SELECT cv.validation_date FROM affiliate_cpa_validations cv
    WHERE cv.referred_user_id = ru.user_id ORDER BY cv.cpa_level LIMIT 1
) AS v ON true
LEFT JOIN affiliate_cpa_validations l
  ON l.referred_user_id = up.user_id AND l.cpa_level = up.level
 AND l.affiliate_id = up.ancestor_id;
"""

# A full load rebuilds every row: the same rows as _REFERRALS for every user with an upline
# (all of them moved), each total and first validation taken in one pass over its table rather
# than one index probe per user (probes into tables larger than the buffer cache grew 5x for 3x
# the users, issue 17).
_REFERRALS_ALL = """
INSERT INTO affiliate_referrals
    (referrer_id, referred_id, mlm_level, referral_date, status, validation_date,
     total_deposits, total_bets, cpa_amount)
SELECT up.ancestor_id, up.user_id, up.level, e.referred_at,
       CASE WHEN v.validation_date IS NULL THEN 'pending' ELSE 'validated' END,
       v.validation_date, coalesce(t.deposits, 0), coalesce(t.stake, 0),
       coalesce(l.cpa_amount, 0)
FROM etl.user_upline up
JOIN etl.edges e ON e.user_id = up.user_id
LEFT JOIN (SELECT user_id, sum(deposits) AS deposits, sum(stake) AS stake
           FROM etl.user_daily GROUP BY user_id) AS t ON t.user_id = up.user_id
LEFT JOIN (SELECT DISTINCT ON (referred_user_id) referred_user_id, validation_date
           FROM affiliate_cpa_validations ORDER BY referred_user_id, cpa_level) AS v
  ON v.referred_user_id = up.user_id
LEFT JOIN affiliate_cpa_validations l
  ON l.referred_user_id = up.user_id AND l.cpa_level = up.level
 AND l.affiliate_id = up.ancestor_id
"""

# A user's all-time totals change by exactly what its changed days changed (user_days_after
# minus user_days_before over the same (user, day) pairs); moved and newly validated users were
# rebuilt above.
_REFERRAL_TOTALS = """
UPDATE affiliate_referrals r
SET total_deposits = r.total_deposits + t.deposits, total_bets = r.total_bets + t.stake
FROM (
    SELECT user_id, sum(deposits) AS deposits, sum(stake) AS stake
    FROM (SELECT user_id, deposits, stake FROM user_days_after WHERE NOT is_moved
          UNION ALL
          SELECT user_id, -deposits, -stake FROM user_days_before WHERE NOT is_moved) AS changes
    GROUP BY user_id
    HAVING sum(deposits) <> 0 OR sum(stake) <> 0
) AS t
WHERE r.referred_id = t.user_id
  AND NOT EXISTS (SELECT 1 FROM referrals_to_rebuild b WHERE b.user_id = t.user_id)
"""


def _mlm_sql() -> str:
    kinds = {
        "count": "l.new_referrals",
        "deposits": "l.deposits",
        "bets": "l.stake",
        "ggr": "l.stake - l.win",
        "cpa": "l.cpa",
        "rev": "l.rev",
    }
    names = [f"level_{n}_{k}" for k in kinds for n in range(1, 6)]
    values = [_LEVEL.format(col=col, n=n) for col in kinds.values() for n in range(1, 6)]
    return _MLM.format(
        columns=", ".join(names),
        values=", ".join(values),
        updates=", ".join(f"{c} = EXCLUDED.{c}" for c in names),
        current=", ".join(f"m.{c}" for c in [*names, "total_network_size"]),
        excluded=", ".join(f"EXCLUDED.{c}" for c in [*names, "total_network_size"]),
    )


_MLM_SQL = _mlm_sql()


@asynccontextmanager
async def _as_planned() -> AsyncIterator[None]:
    yield


async def _rerank(conn: asyncpg.Connection) -> None:
    """An incremental cycle's ranks: each total's holders moved by the touched affiliates'
    change, then the ranks of the metrics that moved (a few hundred totals, not the affiliates).
    """
    async with nested_loops(conn):  # the touched affiliates' rows, by id
        await conn.execute(_RANK_CHANGES)
    if await conn.fetchval("SELECT EXISTS (SELECT 1 FROM rank_changes)"):
        await conn.execute(_APPLY_RANK_CHANGES)


def _summaries(source: str, *, full: bool = True) -> str:
    """The summaries of ``source``'s level rows; an incremental cycle's in key order (the rows
    of one affiliate share index pages: etl.accrual writes its rows so too)."""
    order = "" if full else "ORDER BY l.affiliate_id, l.period_type, l.period_start\n"
    sql = _SUMMARIES.replace("{source}", source).replace("{zero_levels}", _ZERO_LEVELS)
    return sql.replace("{order}", order)


async def run(cycle: Cycle) -> None:
    """The pipeline step: rebuild the published rows this cycle changed."""
    written = await publish(cycle.conn, full=cycle.full)
    cycle.result.affiliates_touched = written.pop("affiliates_touched")
    cycle.result.touched_affiliate_ids = [
        r[0] for r in await cycle.conn.fetch("SELECT affiliate_id FROM touched_affiliates LIMIT 10000")
    ]
    cycle.result.rows_written = written


async def publish(conn: asyncpg.Connection, *, full: bool = False) -> dict[str, int]:
    """Rebuild what changed; returns rows written per robust table and touched affiliates."""
    written: dict[str, int] = {}
    if full:
        async with indexes_built_after(conn, "affiliate_periodic_summaries"), whole_table_scans(conn):
            status = await conn.execute(_summaries("etl.affiliate_level_periods"))
    else:
        await conn.execute(_TOUCHED_PERIODS)
        status = await conn.execute(_summaries(_TOUCHED_LEVEL_ROWS, full=False))
    written["affiliate_periodic_summaries"] = int(status.split()[-1])
    await conn.execute(_TOUCHED_AFFILIATES)
    if full:
        await conn.execute(_MEMBERSHIP)
    else:
        async with nested_loops(conn):  # a few thousand ids against 300k users
            await conn.execute(_RANKED_BEFORE)
            await conn.execute(_MEMBERSHIP)
    async with nested_loops(conn) if not full else _as_planned():
        status = await conn.execute(_MLM_SQL)
        written["affiliate_mlm_structure"] = int(status.split()[-1])
        status = await conn.execute(_AFFILIATES)  # probes cadastro by id, not a 300k hash
        written["affiliates"] = int(status.split()[-1])
    if full:
        await conn.execute(_RANKS)
    else:
        await _rerank(conn)
    if full:
        async with indexes_built_after(conn, "affiliate_referrals"):
            written["affiliate_referrals"] = int((await conn.execute(_REFERRALS_ALL)).split()[-1])
    else:
        await conn.execute(_REFERRALS)
        async with nested_loops(conn):  # a few thousand users against 615k referral rows
            updated = int((await conn.execute(_REFERRAL_TOTALS)).split()[-1])
        written["affiliate_referrals"] = updated + await conn.fetchval(
            "SELECT count(*) FROM affiliate_referrals r"
            " JOIN referrals_to_rebuild u ON u.user_id = r.referred_id"
        )
    written["affiliates_touched"] = await conn.fetchval("SELECT count(*) FROM affiliates_to_publish")
    return written
