"""Affiliates by id, and the upline (p1..p5) of an affiliate."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import BigInteger, Integer, Numeric, Text, column, table
from sqlalchemy.engine import Row

from resolvers.loaders.base import BatchLoader, group_rows, sql

AFFILIATE_COLUMNS = (
    "affiliate_id, name, email, phone, status, total_referrals, total_validated_referrals, "
    "total_deposits, total_withdrawals, total_bets, total_ggr, total_cpa_earned, "
    "total_rev_earned, total_network_size, rank_cpa, rank_referrals, registered_at"
)

# The same rows for the list queries built with SQLAlchemy Core (filters and orders vary).
# affiliates_ranked is the affiliates table with each active affiliate's ranks looked up by
# its totals (migration 0004).
affiliates = table(
    "affiliates_ranked",
    column("affiliate_id", BigInteger),
    column("name", Text),
    column("email", Text),
    column("phone", Text),
    column("status", Text),
    column("total_referrals", Integer),
    column("total_validated_referrals", Integer),
    column("total_deposits", Numeric(18, 2)),
    column("total_withdrawals", Numeric(18, 2)),
    column("total_bets", Numeric(18, 2)),
    column("total_ggr", Numeric(18, 2)),
    column("total_cpa_earned", Numeric(18, 2)),
    column("total_rev_earned", Numeric(18, 2)),
    column("total_network_size", Integer),
    column("rank_cpa", Integer),
    column("rank_referrals", Integer),
    column("registered_at"),
)

_BY_ID = sql(f"SELECT {AFFILIATE_COLUMNS} FROM affiliates_ranked WHERE affiliate_id = ANY(:ids)")

# affiliate_referrals holds one row per (ancestor, user, level): the user's upline, indexed.
_UPLINE = sql(
    "SELECT referred_id, referrer_id FROM affiliate_referrals WHERE referred_id = ANY(:ids) "
    "ORDER BY referred_id, mlm_level"
)


class AffiliateByIdLoader(BatchLoader[int, Row | None]):
    async def load_batch(self, keys: list[int]) -> Sequence[Row | None]:
        rows = await self.access.for_affiliates(_BY_ID, keys)
        found = {r.affiliate_id: r for r in rows}
        return [found.get(k) for k in keys]


class UplineIdsByAffiliateIdLoader(BatchLoader[int, list[int]]):
    """p1..p5 of each affiliate, nearest first."""

    async def load_batch(self, keys: list[int]) -> Sequence[list[int]]:
        rows = await self.access.for_affiliates(_UPLINE, keys)
        by_user = group_rows(rows, "referred_id")
        return [[r.referrer_id for r in by_user.get(k, [])] for k in keys]
