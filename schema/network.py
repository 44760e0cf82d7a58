"""An affiliate's five-level network (``affiliate_mlm_structure``)."""

from __future__ import annotations

from decimal import Decimal

import strawberry
from sqlalchemy.engine import Row

_ZERO = Decimal("0.00")

# The downline policy (resolvers.viewer): an affiliate's earnings are personal.
_EARNINGS = " BRL. Null for another affiliate's token: earnings are personal."


@strawberry.type(description="N_L(A): the users whose level-L upline is this affiliate, now (a "
                             "moved referral takes its whole history with it). All-time figures "
                             "in BRL, as of the last ETL run (`syncStatus.dataAsOf`).")
class NetworkLevel:
    level: int = strawberry.field(description="The network level L, 1..5: 1 are the direct "
                                              "referrals, 2 their referrals, and so on.")
    count: int = strawberry.field(description="How many users this level holds.")
    deposits: Decimal = strawberry.field(
        description="Approved deposits of this level's users, all time, BRL.")
    bets: Decimal = strawberry.field(description="Stakes of this level's users, all time, BRL.")
    ggr: Decimal = strawberry.field(
        description="GGR of this level's users (stakes minus wins; negative when the players "
                    "won), all time, BRL.")
    cpa: Decimal | None = strawberry.field(
        description="CPA the affiliate earned at this level, all time: its validations at this "
                    "level, whatever their status." + _EARNINGS)
    rev: Decimal | None = strawberry.field(
        description="REV the affiliate accrued at this level, all time: the sum of its daily "
                    "accruals, signed (negative when the players won)." + _EARNINGS)


@strawberry.type(description="An affiliate's network: the users up to five referral levels "
                             "below it, level by level, as of the last ETL run "
                             "(`syncStatus.dataAsOf`).")
class Network:
    total_network_size: int = strawberry.field(
        description="How many users the levels listed hold (the sum of their counts).")
    levels: list[NetworkLevel] = strawberry.field(
        description="Level 1 first: all five, or of a level-L downline, for an affiliate token, "
                    "its levels 1..5-L (none at L = 5).")

    @classmethod
    def from_row(cls, row: Row | None, depth: int = 5) -> Network:
        """``depth``: how many levels the viewer may see (the downline policy)."""
        if row is None:
            return cls(
                total_network_size=0,
                levels=[NetworkLevel(level=n, count=0, deposits=_ZERO, bets=_ZERO, ggr=_ZERO,
                                     cpa=_ZERO if depth == 5 else None, rev=_ZERO if depth == 5 else None)
                        for n in range(1, depth + 1)],
            )
        m = row._mapping
        return cls(
            total_network_size=m["total_network_size"],
            levels=[
                NetworkLevel(
                    level=n,
                    count=m[f"level_{n}_count"],
                    deposits=m[f"level_{n}_deposits"],
                    bets=m[f"level_{n}_bets"],
                    ggr=m[f"level_{n}_ggr"],
                    cpa=m[f"level_{n}_cpa"],
                    rev=m[f"level_{n}_rev"],
                )
                for n in range(1, depth + 1)
            ],
        )
