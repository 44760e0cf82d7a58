"""Affiliate.referrals: a keyset page over ``affiliate_referrals``."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from resolvers.arguments import as_datetime, as_int, check_first, check_level, decode_cursor, encode_cursor
from resolvers.context import Context
from resolvers.loaders.referral import ReferralArgs
from resolvers.pagination import Page, page_of

CURSOR_TAG = "referral"


async def referrals_of(
    ctx: Context, affiliate_id: int, *, level: int | None, status: str | None,
    first: int | None, after: str | None,
) -> Page[Any]:
    """Newest referral first; ``status`` is a stored value (``pending``/``validated``)."""
    args = ReferralArgs(
        first=check_first(first, ctx.max_page_size),
        after=decode_cursor(after, CURSOR_TAG, (as_datetime, as_int)),
        level=check_level(level),
        status=status,
    )
    page = await ctx.loaders.referral_page_by_affiliate.load((affiliate_id, args))

    async def count() -> int:
        if args.status is None:
            # The network row already holds the level sizes: no COUNT(*) over the referrals.
            network = await ctx.loaders.network_by_affiliate_id.load(affiliate_id)
            if network is None:
                return 0
            # A level beyond what the downline policy shows is None there: nothing to count.
            return int(network._mapping[
                f"level_{args.level}_count" if args.level else "total_network_size"
            ] or 0)
        return await ctx.loaders.referral_count_by_affiliate.load(
            (affiliate_id, replace(args, first=0, after=None))
        )

    return page_of(page.rows, referral_cursor, page.has_next_page, after, count)


def referral_cursor(row: Any) -> str:
    """A referral row's keyset cursor (its date, then the referred user)."""
    return encode_cursor(CURSOR_TAG, row.referral_date, row.referred_id)
