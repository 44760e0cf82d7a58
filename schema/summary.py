"""Periodic summaries (``affiliate_periodic_summaries``) and their per-level breakdown."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import orjson
import strawberry
from sqlalchemy.engine import Row

from schema.enums import PeriodType

# The downline policy (resolvers.viewer): an affiliate's earnings are personal.
_EARNINGS = "The affiliate's own earnings: null for another affiliate's token."


@strawberry.type
class LevelBreakdown:
    level: int
    new_referrals: int
    deposits: Decimal
    bets: Decimal
    ggr: Decimal
    cpa: Decimal | None = strawberry.field(description=_EARNINGS)
    rev: Decimal | None = strawberry.field(description=_EARNINGS)


@strawberry.type(description="One period with any activity; figures cover the whole network.")
class PeriodicSummary:
    period_type: PeriodType
    period_start: date = strawberry.field(description="The first local day of the period.")
    new_referrals: int
    validated_referrals: int
    total_deposits: Decimal
    total_bets: Decimal
    total_ggr: Decimal
    cpa_earned: Decimal | None = strawberry.field(description=_EARNINGS)
    rev_earned: Decimal | None = strawberry.field(description=_EARNINGS)
    breakdown: strawberry.Private[Any]

    @strawberry.field(description="Levels 1..5, level 1 first; of a level-L downline, for an "
                                  "affiliate token, its levels 1..5-L.")
    def levels(self) -> list[LevelBreakdown]:
        if isinstance(self.breakdown, list):  # already limited by the downline policy
            return [LevelBreakdown(level=n, **part) for n, part in enumerate(self.breakdown, 1)]
        raw = orjson.loads(self.breakdown) if isinstance(self.breakdown, str | bytes) else self.breakdown
        return [
            LevelBreakdown(
                level=n,
                new_referrals=int(part.get("new_referrals", 0)),
                deposits=Decimal(part.get("deposits", "0.00")),
                bets=Decimal(part.get("bets", "0.00")),
                ggr=Decimal(part.get("ggr", "0.00")),
                cpa=Decimal(part.get("cpa", "0.00")),
                rev=Decimal(part.get("rev", "0.00")),
            )
            for n in range(1, 6)
            for part in [raw.get(str(n)) or {}]
        ]

    @classmethod
    def from_row(cls, row: Row) -> PeriodicSummary:
        return cls(
            period_type=PeriodType(row.period_type),
            period_start=row.period_start,
            new_referrals=row.new_referrals,
            validated_referrals=row.validated_referrals,
            total_deposits=row.total_deposits,
            total_bets=row.total_bets,
            total_ggr=row.total_ggr,
            cpa_earned=row.cpa_earned,
            rev_earned=row.rev_earned,
            breakdown=row.level_breakdown,
        )

