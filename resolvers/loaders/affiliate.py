"""Affiliates by id, and the upline (p1..p5) of an affiliate."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.engine import Row

from db.tables import AFFILIATE_COLUMNS
from resolvers.loaders.base import BatchLoader, group_rows, sql

_BY_ID = sql(f"SELECT {AFFILIATE_COLUMNS} FROM affiliates_ranked WHERE affiliate_id = ANY(:ids)")

# affiliate_referrals holds one row per (ancestor, user, level): the user's upline, indexed.
_UPLINE = sql(
    "SELECT referred_id, referrer_id FROM affiliate_referrals WHERE referred_id = ANY(:ids) "
    "ORDER BY referred_id, mlm_level"
)


class AffiliateByIdLoader(BatchLoader[int, Row | None]):
    async def load_batch(self, keys: list[int]) -> Sequence[Row | None]:
        rows = await self.access.for_affiliates(_BY_ID, keys)
        found = {r.affiliate_id: self.access.affiliate_row(r) for r in rows}
        return [found.get(k) for k in keys]


class UplineIdsByAffiliateIdLoader(BatchLoader[int, list[int]]):
    """p1..p5 of each affiliate, nearest first."""

    async def load_batch(self, keys: list[int]) -> Sequence[list[int]]:
        rows = await self.access.for_affiliates(_UPLINE, keys)
        by_user = group_rows(rows, "referred_id")
        return [[r.referrer_id for r in by_user.get(k, [])] for k in keys]
