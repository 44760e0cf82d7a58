"""Affiliate.transactions: a keyset page over ``affiliate_financial_transactions``."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime
from typing import Any

from db.reader import sql
from etl import archive
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
from resolvers.errors import Archived
from resolvers.loaders.transaction import TransactionArgs
from resolvers.pagination import Page, page_of

CURSOR_TAG = "transaction"


async def transactions_of(
    ctx: Context, affiliate_id: int, *, type: str | None, level: int | None,
    start: datetime | None, end: datetime | None, first: int | None, after: str | None,
) -> Page[Any]:
    """Newest first; ``type`` is a stored value; a bound without offset is local time.
    A ``start`` in an archived month answers ARCHIVED; without ``start``, online months only."""
    start, end = aware(start, ctx.zone, "from"), aware(end, ctx.zone, "to")
    check_range(start, end)
    await refuse_archived(ctx, start, end)
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


_OFFLINE_MONTHS = sql(archive.OFFLINE_MONTHS)


async def refuse_archived(ctx: Context, start: datetime | None, end: datetime | None) -> None:
    """ARCHIVED naming the archived months [start, end) reaches. Months inside the retention
    window are never archived: only a start before it costs a query."""
    if start is None:
        return  # from the beginning of what is online (documented on the field)
    first_online = archive.cutoff(ctx.settings)
    if start >= datetime(first_online.year, first_online.month, 1, tzinfo=ctx.zone):
        return
    reached = [
        row.month for row in await ctx.database.fetch(_OFFLINE_MONTHS)
        if _local(archive.next_month(row.month), ctx) > start
        and (end is None or _local(row.month, ctx) < end)
    ]
    if reached:
        raise Archived([f"{m:%Y-%m}" for m in reached])


def _local(day: date, ctx: Context) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=ctx.zone)
