"""An affiliate's five-level network (``affiliate_mlm_structure``)."""

from __future__ import annotations

from decimal import Decimal

import strawberry
from sqlalchemy.engine import Row

_ZERO = Decimal("0.00")

# The downline policy (resolvers.viewer): an affiliate's earnings are personal.
_EARNINGS = "The affiliate's own earnings: null for another affiliate's token."


@strawberry.type(description="N_L(A): the users whose level-L upline is this affiliate.")
class NetworkLevel:
    level: int
    count: int
    deposits: Decimal
    bets: Decimal
    ggr: Decimal
    cpa: Decimal | None = strawberry.field(description=_EARNINGS)
    rev: Decimal | None = strawberry.field(description=_EARNINGS)


@strawberry.type
class Network:
    total_network_size: int = strawberry.field(description="The users of the levels listed.")
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
