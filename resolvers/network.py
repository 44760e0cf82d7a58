"""Affiliate.network: the five-level row of ``affiliate_mlm_structure``."""

from __future__ import annotations

from typing import Any

from resolvers.context import Context


async def network_of(ctx: Context, affiliate_id: int) -> Any | None:
    """The affiliate's network row; None when it has no network yet."""
    return await ctx.loaders.network_by_affiliate_id.load(affiliate_id)
