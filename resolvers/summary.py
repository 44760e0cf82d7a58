"""Affiliate.summaries: the precomputed periodic summaries."""

from __future__ import annotations

from datetime import date

from strawberry.types import Info

from resolvers.arguments import check_range
from resolvers.context import Context
from resolvers.errors import BadUserInput
from schema.enums import PeriodType
from schema.summary import PeriodicSummary

MAX_LAST = 1000


async def summaries_of(
    info: Info, affiliate_id: int, *, period: PeriodType, start: date | None, end: date | None,
    last: int | None,
) -> list[PeriodicSummary]:
    ctx: Context = info.context
    check_range(start, end)
    if last is not None and not 1 <= last <= MAX_LAST:
        raise BadUserInput(f"last must be between 1 and {MAX_LAST}, got {last}")
    rows = await ctx.loaders.summaries_by_affiliate_and_period.load(
        (affiliate_id, period.value, start, end, last)
    )
    return [PeriodicSummary.from_row(r) for r in rows]
