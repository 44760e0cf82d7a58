"""Column lists and SQLAlchemy Core table definitions of the robust database, as the API
reads it: the one home for them (loaders, list queries and exports share these)."""

from __future__ import annotations

from sqlalchemy import BigInteger, Integer, Numeric, Text, column, table

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
