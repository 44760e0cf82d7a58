"""Affiliate.transactions: a keyset connection over ``affiliate_financial_transactions``."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from strawberry.types import Info

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
from schema.enums import TransactionType
from schema.pagination import Connection, connection
from schema.transaction import Transaction

CURSOR_TAG = "transaction"


async def transactions_of(
    info: Info, affiliate_id: int, *, type: TransactionType | None, level: int | None,
    start: datetime | None, end: datetime | None, first: int | None, after: str | None,
) -> Connection[Transaction]:
    ctx: Context = info.context
    start, end = aware(start, ctx.zone), aware(end, ctx.zone)
    check_range(start, end)
    args = TransactionArgs(
        first=check_first(first, ctx.max_page_size),
        after=decode_cursor(after, CURSOR_TAG, (as_datetime, as_int)),
        type=type.value if type is not None else None,
        level=check_level(level),
        start=start,
        end=end,
    )
    page = await ctx.loaders.transaction_page_by_affiliate.load((affiliate_id, args))

    async def count() -> int:
        return await ctx.loaders.transaction_count_by_affiliate.load(
            (affiliate_id, replace(args, first=0, after=None))
        )

    return connection(
        [Transaction.from_row(r) for r in page.rows],
        [encode_cursor(CURSOR_TAG, r.transaction_date, r.id) for r in page.rows],
        page.has_next_page, after, count,
    )
