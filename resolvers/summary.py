"""Affiliate.summaries: the precomputed periodic summaries."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

from resolvers.arguments import check_range
from resolvers.context import Context
from resolvers.errors import BadUserInput

MAX_LAST = 1000


async def summaries_of(
    ctx: Context, affiliate_id: int, *, period: str, start: date | None, end: date | None,
    last: int | None,
) -> Sequence[Any]:
    """Rows of ``affiliate_periodic_summaries``, oldest first; ``period`` is a stored value."""
    check_range(start, end)
    if last is not None and not 1 <= last <= MAX_LAST:
        raise BadUserInput(f"last must be between 1 and {MAX_LAST}, got {last}")
    return await ctx.loaders.summaries_by_affiliate_and_period.load((affiliate_id, period, start, end, last))
