"""Affiliate.transactions: a keyset page over ``affiliate_financial_transactions``."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from resolvers.arguments import (
    as_datetime,
    as_int,
    aware,
    check_first,
    check_level,
    check_range,
    decode_cursor,
    encode_cursor,
)
from resolvers.context import Context
from resolvers.loaders.transaction import TransactionArgs
from resolvers.pagination import Page, page_of

CURSOR_TAG = "transaction"


async def transactions_of(
    ctx: Context, affiliate_id: int, *, type: str | None, level: int | None,
    start: datetime | None, end: datetime | None, first: int | None, after: str | None,
) -> Page[Any]:
    """Newest first; ``type`` is a stored value; a bound without offset is local time."""
    start, end = aware(start, ctx.zone, "from"), aware(end, ctx.zone, "to")
    check_range(start, end)
    args = TransactionArgs(
        first=check_first(first, ctx.max_page_size),
        after=decode_cursor(after, CURSOR_TAG, (as_datetime, as_int)),
        type=type,
        level=check_level(level),
        start=start,
        end=end,
    )
    page = await ctx.loaders.transaction_page_by_affiliate.load((affiliate_id, args))

    async def count() -> int:
        return await ctx.loaders.transaction_count_by_affiliate.load(
            (affiliate_id, replace(args, first=0, after=None))
        )

    return page_of(page.rows, lambda r: encode_cursor(CURSOR_TAG, r.transaction_date, r.id),
                   page.has_next_page, after, count)
