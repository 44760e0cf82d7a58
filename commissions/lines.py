"""The lines of statements, as SQL: one CPA line per validation (rejected ones listed at zero),
one REV line per level and local day with a non-zero daily accrual (etl.affiliate_level_periods,
period_type 'daily'), and, in the first open month only, one adjustment line per thing that
changed in a closed month since it was closed.

What a closed month accounts for is the sum of every stored line dated in it (its own lines
plus later adjustments), by key (the validation, or the level and day); live minus accounted,
where not zero, is the adjustment. So open statements always equal the robust tables, closed
ones never change, and every cent of late data lands exactly once in the next open month.

A correction belongs to the month it corrects: an adjustment's amount is the raw change (CPA
adjustments are paid as they are). REV corrections do not join the open month's balance: the
months they correct are settled again (``commissions.payout.resettle``, from how each closed
month stands: ``rev_states_sql``), and the open month pays what that changes, on REV
settlement lines (stored in commission_rev_settlements when the month closes).
"""

from __future__ import annotations

from datetime import date

import asyncpg

from commissions.months import first_open_month


def affiliate_filter(alias: str, param: int | None, after: int | None = None) -> str:
    """The affiliates a source reads: those in the array $param, those above the keyset $after."""
    ids = "" if param is None else f" AND {alias}.affiliate_id = ANY(${param}::bigint[])"
    return ids + ("" if after is None else f" AND {alias}.affiliate_id > ${after}::bigint")


# Lines dated in months [$2, $3] (local): CPA per validation, REV per level and day.
_MONTH_LINES = """
SELECT v.affiliate_id,
       date_trunc('month', v.validation_date AT TIME ZONE $1)::date AS month,
       date_trunc('month', v.validation_date AT TIME ZONE $1)::date AS for_month,
       'cpa'::text AS family,
       CASE WHEN v.cpa_status = 'rejected' THEN 'cpa_rejected' ELSE 'cpa' END AS kind,
       v.id AS validation_id, v.referred_user_id, v.cpa_level AS level,
       (v.validation_date AT TIME ZONE $1)::date AS day,
       CASE WHEN v.cpa_status = 'rejected' THEN 0 ELSE v.cpa_amount END::numeric(18,2) AS amount,
       v.cpa_amount::numeric(18,2) AS listed_amount, NULL::numeric(18,2) AS amount_paid,
       CASE WHEN v.cpa_status = 'rejected'
            THEN format('CPA level %s for user %s validated %s: rejected (%s), %s not paid',
                        v.cpa_level, v.referred_user_id, (v.validation_date AT TIME ZONE $1)::date,
                        coalesce(r.reason, 'no reason recorded'), v.cpa_amount)
            ELSE format('CPA level %s for user %s validated %s (validation %s)',
                        v.cpa_level, v.referred_user_id, (v.validation_date AT TIME ZONE $1)::date, v.id)
       END AS description
FROM affiliate_cpa_validations v
LEFT JOIN cpa_validation_rejections r ON r.validation_id = v.id
WHERE v.validation_date >= ($2::date::timestamp AT TIME ZONE $1)
  AND v.validation_date < (($3::date + interval '1 month') AT TIME ZONE $1){ids_v}
UNION ALL
SELECT p.affiliate_id, date_trunc('month', p.period_start)::date, date_trunc('month', p.period_start)::date,
       'rev', 'rev', NULL, NULL, p.level, p.period_start, p.rev, p.rev, NULL,
       format('REV level %s on %s: GGR %s (stake %s - win %s)',
              p.level, p.period_start, p.stake - p.win, p.stake, p.win)
FROM etl.affiliate_level_periods p
WHERE p.period_type = 'daily' AND p.rev <> 0
  AND p.period_start >= $2::date AND p.period_start < ($3::date + interval '1 month'){ids_p}
"""

# Negative carryover of the terms in force on the last day of line c's month for its affiliate
# (PlanBook.terms in SQL): the terms of a closed month whose statement was not stored, since
# the affiliate had nothing in it; for the others, the stored statement says how it was settled.
_CARRYOVER_IN_FORCE = """
(SELECT v.negative_carryover FROM commission_plan_versions v
 WHERE v.plan_id = coalesce(
         (SELECT h.plan_id FROM affiliate_plan_history h
          WHERE h.affiliate_id = c.affiliate_id AND h.effective_from <= c.last_day
          ORDER BY h.effective_from DESC LIMIT 1),
         (SELECT p.id FROM commission_plans p WHERE p.is_default))
 ORDER BY v.effective_from > c.last_day,
          CASE WHEN v.effective_from <= c.last_day THEN v.effective_from END DESC NULLS LAST,
          v.effective_from
 LIMIT 1)"""


def rev_states_sql(affiliate: str, first_changed: str, first_open: str) -> str:
    """A scalar subquery: how each closed month of the affiliate ``affiliate`` from the month
    before ``first_changed`` to the one before ``first_open`` (SQL expressions) stands settled,
    in month order, as an array of [negative carryover (1 or 0), carryover_in, rev, rev_paid,
    carryover_out] (``commissions.payout.RevState``): as it was last settled again (its latest
    row in commission_rev_settlements), else as closed (its statement: rev_paid is what its own
    balance paid, max(0, carryover_in + rev)), else zeros (no statement: it had nothing). The
    rule is the stored statement's, else the terms in force on the month's last day."""
    return f"""(SELECT array_agg(ARRAY[
               CASE WHEN coalesce(s.negative_carryover, r.negative_carryover, {_CARRYOVER_IN_FORCE})
                    THEN 1 ELSE 0 END,
               coalesce(r.carryover_in, s.carryover_in, 0)::numeric(18,2),
               coalesce(r.rev, s.rev, 0)::numeric(18,2),
               coalesce(r.rev_paid, greatest(s.carryover_in + s.rev, 0), 0)::numeric(18,2),
               coalesce(r.carryover_out, s.carryover_out, 0)::numeric(18,2)]::numeric[] ORDER BY c.month)
        FROM (SELECT {affiliate} AS affiliate_id, m::date AS month,
                     (m + interval '1 month' - interval '1 day')::date AS last_day
              FROM generate_series({first_changed} - interval '1 month', {first_open} - interval '1 month',
                                   interval '1 month') AS m) AS c
        LEFT JOIN commission_statements s ON s.affiliate_id = c.affiliate_id AND s.month = c.month
        LEFT JOIN LATERAL (SELECT * FROM commission_rev_settlements x
                           WHERE x.affiliate_id = c.affiliate_id AND x.for_month = c.month
                           ORDER BY x.month DESC LIMIT 1) AS r ON true)"""


# Everything dated before $2 (the first open month) that differs from what stored lines
# account for, by key: the adjustments, all in month $2.
_ADJUSTMENT_KEYS = """
SELECT affiliate_id, $2::date AS month, for_month, family, family || '_adjustment' AS kind, validation_id,
       max(referred_user_id) AS referred_user_id, level, day, sum(amount)::numeric(18,2) AS amount,
       sum(live) AS live, sum(accounted) AS accounted
FROM (
    SELECT v.affiliate_id, date_trunc('month', v.validation_date AT TIME ZONE $1)::date AS for_month,
           'cpa'::text AS family, v.id AS validation_id, v.referred_user_id, v.cpa_level AS level,
           (v.validation_date AT TIME ZONE $1)::date AS day,
           v.cpa_amount AS amount, v.cpa_amount AS live, 0::numeric AS accounted, 0 AS lines
    FROM affiliate_cpa_validations v
    WHERE v.cpa_status <> 'rejected' AND v.validation_date < ($2::date::timestamp AT TIME ZONE $1){ids_v}
    UNION ALL
    SELECT p.affiliate_id, date_trunc('month', p.period_start)::date, 'rev', NULL, NULL, p.level,
           p.period_start, p.rev, p.rev, 0, 0
    FROM etl.affiliate_level_periods p
    WHERE p.period_type = 'daily' AND p.rev <> 0 AND p.period_start < $2::date{ids_p}
    UNION ALL
    SELECT l.affiliate_id, l.for_month, l.family, l.validation_id, l.referred_user_id, l.level, l.day,
           -l.amount, 0, l.amount, 1
    FROM commission_statement_lines l
    WHERE l.for_month < $2::date{ids_l}
) AS x
GROUP BY affiliate_id, for_month, family, validation_id, level, day
-- a validation no statement listed yet is listed, whatever its amount (0.00 too: the statement
-- that lists it is the one that pays it, and the workflow moves it with that statement)
HAVING sum(amount) <> 0 OR (family = 'cpa' AND sum(lines) = 0)
"""

_ADJUSTMENT_LINES = """
SELECT affiliate_id, month, for_month, family, kind, validation_id, referred_user_id, level, day, amount,
       amount AS listed_amount, NULL::numeric(18,2) AS amount_paid,
       CASE
         WHEN family = 'cpa' AND accounted = 0
           THEN format('corrects %s: validation %s (CPA level %s for user %s, dated %s) '
                       'arrived after the month closed',
                       to_char(for_month, 'YYYY-MM'), validation_id, level, referred_user_id, day)
         WHEN family = 'cpa' AND live = 0
           THEN format('corrects %s: validation %s (CPA level %s for user %s, dated %s) '
                       'was rejected after the month closed',
                       to_char(for_month, 'YYYY-MM'), validation_id, level, referred_user_id, day)
         WHEN family = 'cpa'
           THEN format('corrects %s: validation %s changed from %s to %s',
                       to_char(for_month, 'YYYY-MM'), validation_id, accounted::numeric(18,2),
                       live::numeric(18,2))
         ELSE format('corrects %s: REV level %s on %s was %s when accounted, is %s now (late data)',
                     to_char(for_month, 'YYYY-MM'), level, day, accounted::numeric(18,2), live::numeric(18,2))
       END AS description
FROM (""" + _ADJUSTMENT_KEYS + """) AS a
"""

_LINE_COLUMNS = (
    "affiliate_id, month, for_month, family, kind, validation_id, referred_user_id, level, "
    "day, amount, listed_amount, amount_paid, description"
)


def _filters(with_ids: bool, after: int | None = None) -> dict[str, str]:
    p = 4 if with_ids else None
    return {f"ids_{alias}": affiliate_filter(alias, p, after) for alias in ("v", "p", "l")}


def month_lines_sql(with_ids: bool) -> str:
    """The lines dated in months [$2, $3]; $1 the zone, $4 the ids."""
    return _MONTH_LINES.format(**_filters(with_ids))


def lines_sql(with_ids: bool, after: int | None = None) -> str:
    """All lines of months [$2, $3] with the adjustments in $2 (the first open month);
    ``after``: the parameter number of a keyset bound (affiliates above it only)."""
    fmt = _filters(with_ids, after)
    return f"{_MONTH_LINES.format(**fmt)} UNION ALL {_ADJUSTMENT_LINES.format(**fmt)}"


async def open_lines(
    conn: asyncpg.Connection, tz: str, affiliate_id: int, month: date
) -> list[asyncpg.Record]:
    """The lines of an open statement (adjustments only in the first open month)."""
    first = await first_open_month(conn, tz, [affiliate_id])
    if first is None or month < first:
        return []
    source = lines_sql(True) if month == first else month_lines_sql(True)
    lines = await conn.fetch(
        f"SELECT {_LINE_COLUMNS} FROM ({source}) AS x WHERE month = $3 "
        "ORDER BY family, kind, day, level, validation_id",
        tz, month, month, [affiliate_id])
    return list(lines)


async def stored_lines(conn: asyncpg.Connection, affiliate_id: int, month: date) -> list[asyncpg.Record]:
    """The lines of a closed statement, as stored (REV settlements are read apart:
    ``stored_rev_settlements``)."""
    return list(await conn.fetch(
        f"SELECT {_LINE_COLUMNS} FROM (SELECT *, amount AS listed_amount, NULL::numeric(18,2) AS amount_paid "
        "FROM commission_statement_lines WHERE affiliate_id = $1 AND month = $2) AS x "
        "ORDER BY family, kind, day, level, validation_id",
        affiliate_id, month))


async def stored_rev_settlements(
    conn: asyncpg.Connection, affiliate_id: int, month: date
) -> list[asyncpg.Record]:
    """The closed months a closed statement settled again, in month order (what it paid for
    each, and how each stood before and after)."""
    return list(await conn.fetch(
        "SELECT * FROM commission_rev_settlements WHERE affiliate_id = $1 AND month = $2 AND for_month < $2 "
        "ORDER BY for_month", affiliate_id, month))
