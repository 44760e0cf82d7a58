"""The five-level network of each affiliate (one ``affiliate_mlm_structure`` row)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.engine import Row

from resolvers.loaders.base import BatchLoader, sql

# The columns of a network row (the compiled path, resolvers/prefetch.py, reads the same).
NETWORK_COLUMNS = "affiliate_id, total_network_size, " + ", ".join(
    f"level_{n}_count, level_{n}_deposits, level_{n}_bets, level_{n}_ggr, level_{n}_cpa, level_{n}_rev"
    for n in range(1, 6)
)
_NETWORK = sql(f"SELECT {NETWORK_COLUMNS} FROM affiliate_mlm_structure WHERE affiliate_id = ANY(:ids)")


class NetworkByAffiliateIdLoader(BatchLoader[int, Row | None]):
    async def load_batch(self, keys: list[int]) -> Sequence[Row | None]:
        rows = await self.access.for_affiliates(_NETWORK, keys)
        found = {r.affiliate_id: self.access.network_row(r) for r in rows}
        return [found.get(k) for k in keys]
