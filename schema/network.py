"""An affiliate's five-level network (``affiliate_mlm_structure``)."""

from __future__ import annotations

from decimal import Decimal

import strawberry
from sqlalchemy.engine import Row

_ZERO = Decimal("0.00")


@strawberry.type(description="N_L(A): the users whose level-L upline is this affiliate.")
class NetworkLevel:
    level: int
    count: int
    deposits: Decimal
    bets: Decimal
    ggr: Decimal
    cpa: Decimal
    rev: Decimal


@strawberry.type
class Network:
    total_network_size: int
    levels: list[NetworkLevel] = strawberry.field(description="Always five, level 1 first.")

    @classmethod
    def from_row(cls, row: Row | None) -> Network:
        if row is None:
            return cls(
                total_network_size=0,
                levels=[NetworkLevel(level=n, count=0, deposits=_ZERO, bets=_ZERO, ggr=_ZERO,
                                     cpa=_ZERO, rev=_ZERO) for n in range(1, 6)],
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
                for n in range(1, 6)
            ],
        )
