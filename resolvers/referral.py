"""Affiliate.referrals: a keyset connection over ``affiliate_referrals``."""

from __future__ import annotations

from dataclasses import replace

from strawberry.types import Info

from resolvers.arguments import as_datetime, as_int, check_first, check_level, decode_cursor, encode_cursor
from resolvers.context import Context
from resolvers.loaders.referral import ReferralArgs
from schema.enums import ReferralStatus
from schema.pagination import Connection, connection
from schema.referral import Referral

CURSOR_TAG = "referral"


async def referrals_of(
    info: Info, affiliate_id: int, *, level: int | None, status: ReferralStatus | None,
    first: int | None, after: str | None,
) -> Connection[Referral]:
    ctx: Context = info.context
    args = ReferralArgs(
        first=check_first(first, ctx.max_page_size),
        after=decode_cursor(after, CURSOR_TAG, (as_datetime, as_int)),
        level=check_level(level),
        status=status.value if status is not None else None,
    )
    page = await ctx.loaders.referral_page_by_affiliate.load((affiliate_id, args))

    async def count() -> int:
        if args.status is None:
            # The network row already holds the level sizes: no COUNT(*) over the referrals.
            network = await ctx.loaders.network_by_affiliate_id.load(affiliate_id)
            if network is None:
                return 0
            return network._mapping[
                f"level_{args.level}_count" if args.level else "total_network_size"
            ]
        return await ctx.loaders.referral_count_by_affiliate.load(
            (affiliate_id, replace(args, first=0, after=None))
        )

    return connection(
        [Referral.from_row(r) for r in page.rows],
        [encode_cursor(CURSOR_TAG, r.referral_date, r.referred_id) for r in page.rows],
        page.has_next_page, after, count,
    )
