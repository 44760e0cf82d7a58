"""What-if: for a month's data, what each affiliate would earn under proposed plan terms
against what it earned, with totals over everyone. CPA as the proposed amount per validation
level (rejected ones excluded), REV as the proposed share of each level's daily GGR rounded
per day, exactly as the ETL accrues it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import asyncpg

from commissions.inputs import PlanTerms, check_terms

# Per affiliate, for the month: what was earned (CPA not rejected, daily REV) and what the
# proposed plan would pay (its CPA amount per validation level, its share of each daily
# level GGR, rounded per day like the ETL). One row of totals over everyone, joined to the
# page (affiliates above $5, at most $6; none when the page is empty).
_SIMULATE = """
WITH cpa AS (
    SELECT affiliate_id,
           sum(cpa_amount) AS actual,
           sum(($4::numeric[])[cpa_level]) AS simulated
    FROM affiliate_cpa_validations
    WHERE cpa_status <> 'rejected'
      AND validation_date >= ($2::date::timestamp AT TIME ZONE $1)
      AND validation_date < (($2::date + interval '1 month') AT TIME ZONE $1)
    GROUP BY affiliate_id
), rev AS (
    SELECT affiliate_id, sum(rev) AS actual,
           sum(CASE WHEN bet_count > 0 THEN round(($3::numeric[])[level] * (stake - win), 2) ELSE 0 END)
               AS simulated
    FROM etl.affiliate_level_periods
    WHERE period_type = 'daily' AND period_start >= $2::date
      AND period_start < ($2::date + interval '1 month')
    GROUP BY affiliate_id
), joined AS (
    SELECT coalesce(c.affiliate_id, r.affiliate_id) AS affiliate_id,
           coalesce(c.actual, 0)::numeric(18,2) AS actual_cpa,
           coalesce(r.actual, 0)::numeric(18,2) AS actual_rev,
           coalesce(c.simulated, 0)::numeric(18,2) AS simulated_cpa,
           coalesce(r.simulated, 0)::numeric(18,2) AS simulated_rev
    FROM cpa c FULL JOIN rev r ON r.affiliate_id = c.affiliate_id
), totals AS (
    SELECT count(*) AS affiliate_count,
           coalesce(sum(actual_cpa), 0)::numeric(18,2) AS total_actual_cpa,
           coalesce(sum(actual_rev), 0)::numeric(18,2) AS total_actual_rev,
           coalesce(sum(simulated_cpa), 0)::numeric(18,2) AS total_simulated_cpa,
           coalesce(sum(simulated_rev), 0)::numeric(18,2) AS total_simulated_rev
    FROM joined
)
SELECT t.*, page.*
FROM totals t
LEFT JOIN LATERAL (
    SELECT * FROM joined WHERE affiliate_id > $5 ORDER BY affiliate_id LIMIT $6
) AS page ON true
ORDER BY page.affiliate_id
"""


@dataclass(frozen=True)
class Amounts:
    cpa: Decimal
    rev: Decimal

    @property
    def total(self) -> Decimal:
        return self.cpa + self.rev


@dataclass(frozen=True)
class Comparison:
    """One affiliate's month: what it earned and what the proposed terms would pay."""

    affiliate_id: int
    actual: Amounts
    simulated: Amounts

    @property
    def difference(self) -> Decimal:
        return self.simulated.total - self.actual.total


@dataclass(frozen=True)
class Simulation:
    month: date
    affiliates: list[Comparison]  # by affiliate id, at most ``first`` after ``after``
    affiliate_count: int  # affiliates with earnings in the month (all pages)
    actual: Amounts  # totals over every affiliate
    simulated: Amounts

    @property
    def difference(self) -> Decimal:
        return self.simulated.total - self.actual.total


async def simulate(
    conn: asyncpg.Connection, tz: str, terms: PlanTerms, month: date, *, first: int, after: int
) -> Simulation:
    """``month``'s earnings under ``terms``: the affiliates above ``after`` (at most ``first``)
    and the totals over everyone."""
    checked = check_terms(terms)
    found = await conn.fetch(_SIMULATE, tz, month, list(checked.rev_share_by_level),
                             list(checked.cpa_by_level), after, first)
    page = [
        Comparison(r["affiliate_id"], Amounts(r["actual_cpa"], r["actual_rev"]),
                   Amounts(r["simulated_cpa"], r["simulated_rev"]))
        for r in found if r["affiliate_id"] is not None
    ]
    totals = found[0]
    return Simulation(
        month=month, affiliates=page, affiliate_count=totals["affiliate_count"],
        actual=Amounts(totals["total_actual_cpa"], totals["total_actual_rev"]),
        simulated=Amounts(totals["total_simulated_cpa"], totals["total_simulated_rev"]),
    )
