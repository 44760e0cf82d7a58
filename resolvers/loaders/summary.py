"""Periodic summaries of affiliates, by period type and optional date range or last N."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import date
from typing import Any

from sqlalchemy.engine import Row

from resolvers.loaders.base import BatchLoader, gather_groups, group_rows, sql

# (affiliate id, period type, from, to, last): the key of one ``summaries`` field.
AffiliatePeriod = tuple[int, str, date | None, date | None, int | None]
SummaryRange = tuple[str, date | None, date | None, int | None]

# level_breakdown as text: decoding jsonb for every row (the driver's stdlib json) cost more
# than the rest of a dashboard's summaries; PeriodicSummary.levels parses it with orjson only
# when a client asks for the levels.
SUMMARY_FIGURES = (
    "affiliate_id, period_type, period_start, new_referrals, validated_referrals, "
    "total_deposits, total_bets, total_ggr, cpa_earned, rev_earned"
)
_COLUMNS = f"{SUMMARY_FIGURES}, level_breakdown::text AS level_breakdown"


def _query(has_from: bool, has_to: bool, has_last: bool) -> Any:
    where = "period_type = :period"
    if has_from:
        where += " AND period_start >= :start"
    if has_to:
        where += " AND period_start <= :end"
    if has_last:
        # The text of level_breakdown is made for the kept rows only, after the LIMIT (the
        # largest network has ~350 daily rows: the cast of all of them doubled the query).
        outer = ", ".join(f"s.{c}" for c in SUMMARY_FIGURES.split(", "))
        return sql(
            f"SELECT {outer}, s.level_breakdown::text AS level_breakdown "
            "FROM unnest(CAST(:ids AS bigint[])) AS k(id) CROSS JOIN LATERAL ("
            f"SELECT {SUMMARY_FIGURES}, level_breakdown FROM affiliate_periodic_summaries "
            f"WHERE affiliate_id = k.id AND {where} ORDER BY period_start DESC LIMIT :last) s "
            "ORDER BY s.affiliate_id, s.period_start"
        )
    return sql(
        f"SELECT {_COLUMNS} FROM affiliate_periodic_summaries "
        f"WHERE affiliate_id = ANY(:ids) AND {where} ORDER BY affiliate_id, period_start"
    )


class SummariesByAffiliateAndPeriodLoader(BatchLoader[AffiliatePeriod, list[Row]]):
    """Oldest period first; one query per distinct (period, from, to, last)."""

    async def load_batch(self, keys: list[AffiliatePeriod]) -> Sequence[list[Row]]:
        groups: dict[SummaryRange, list[int]] = defaultdict(list)
        for affiliate_id, *rest in keys:
            groups[tuple(rest)].append(affiliate_id)  # type: ignore[index]
        found: dict[AffiliatePeriod, list[Row]] = {}

        async def fetch(group: SummaryRange, ids: list[int]) -> None:
            period, start, end, last = group
            query = _query(start is not None, end is not None, last is not None)
            params: dict[str, Any] = {"period": period}
            if start is not None:
                params["start"] = start
            if end is not None:
                params["end"] = end
            if last is not None:
                params["last"] = last
            # Depth 0 (a downline at the viewer's level 5): nothing of its network to show.
            depths = await self.access.depths(ids)
            shown = [i for i in ids if depths.get(i, 0) > 0]
            rows = await self.access.for_affiliates(query, shown, **params)
            by_affiliate = group_rows([self.access.summary_row(r) for r in rows], "affiliate_id")
            for affiliate_id in ids:
                found[(affiliate_id, *group)] = by_affiliate.get(affiliate_id, [])

        await gather_groups(fetch, groups)
        return [found[k] for k in keys]
