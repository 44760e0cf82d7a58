"""Affiliate.network."""

from __future__ import annotations

from strawberry.types import Info

from schema.network import Network


async def network_of(info: Info, affiliate_id: int) -> Network:
    return Network.from_row(await info.context.loaders.network_by_affiliate_id.load(affiliate_id))
