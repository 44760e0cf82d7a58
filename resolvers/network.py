"""Affiliate.network: the five-level row of ``affiliate_mlm_structure``."""

from __future__ import annotations

from typing import Any

from resolvers.context import Context


async def network_of(ctx: Context, affiliate_id: int) -> tuple[Any | None, int]:
    """The affiliate's network row (None when it has no network yet) and how many of its
    levels the viewer may see (the downline policy: 5, or 5 - L for a level-L downline)."""
    row = await ctx.loaders.network_by_affiliate_id.load(affiliate_id)
    return row, ctx.access.depth(affiliate_id)
