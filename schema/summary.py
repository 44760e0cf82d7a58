"""Periodic summaries (``affiliate_periodic_summaries``) and their per-level breakdown."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import orjson
import strawberry
from sqlalchemy.engine import Row

from schema.enums import PeriodType

# The downline policy (resolvers.viewer): an affiliate's earnings are personal, and of a
# level-L downline an affiliate token sees the figures of its levels 1..5-L only.
_DOWNLINE = (" Of a level-L downline, for an affiliate token: its levels 1..5-L only.")
_EARNINGS = " BRL. Null for another affiliate's token: earnings are personal."
_AS_OF = "As of the last ETL run (`syncStatus.dataAsOf`)."


@strawberry.type(description="One network level's share of a periodic summary: the activity in "
                             "the period of the users at this level now. Money in BRL. " + _AS_OF)
class LevelBreakdown:
    level: int = strawberry.field(description="The network level L, 1..5: 1 are the direct "
                                              "referrals, 2 their referrals, and so on.")
    new_referrals: int = strawberry.field(
        description="Users of this level whose referral (tracked.criado_em) falls in the period.")
    deposits: Decimal = strawberry.field(
        description="Approved deposits made in the period by this level's users, BRL.")
    bets: Decimal = strawberry.field(description="Stakes bet in the period by this level's users, BRL.")
    ggr: Decimal = strawberry.field(
        description="GGR of this level's users in the period (stakes minus wins; negative when "
                    "the players won), BRL.")
    cpa: Decimal | None = strawberry.field(
        description="CPA the affiliate earned at this level in the period: its validations at "
                    "this level whose t* falls in the period, whatever their status." + _EARNINGS)
    rev: Decimal | None = strawberry.field(
        description="REV the affiliate accrued at this level in the period: the sum of its daily "
                    "accruals, signed (negative when the players won)." + _EARNINGS)


@strawberry.type(description="An affiliate's figures for one local period (business time zone) "
                             "with any activity (a referral, an approved deposit, a bet or a "
                             "validation); periods without any have no row. Money in BRL. "
                             + _AS_OF)
class PeriodicSummary:
    period_type: PeriodType = strawberry.field(description="The kind of period: day, ISO week, "
                                                           "month or year, in local days.")
    period_start: date = strawberry.field(description="The first local day of the period.")
    new_referrals: int = strawberry.field(
        description="Level 1 only: direct referrals whose referral (tracked.criado_em) falls in "
                    "the period.")
    validated_referrals: int = strawberry.field(
        description="Level 1 only: the affiliate's level-1 CPA validations whose t* falls in the "
                    "period.")
    total_deposits: Decimal = strawberry.field(
        description="Whole network (levels 1-5): approved deposits made in the period, BRL."
                    + _DOWNLINE)
    total_bets: Decimal = strawberry.field(
        description="Whole network (levels 1-5): stakes bet in the period, BRL." + _DOWNLINE)
    total_ggr: Decimal = strawberry.field(
        description="Whole network (levels 1-5): GGR in the period (stakes minus wins; negative "
                    "when the players won), BRL." + _DOWNLINE)
    cpa_earned: Decimal | None = strawberry.field(
        description="Whole network (levels 1-5): CPA earned by validations whose t* falls in "
                    "the period, whatever their status (what was earned; statements show what "
                    "is paid)." + _EARNINGS)
    rev_earned: Decimal | None = strawberry.field(
        description="Whole network (levels 1-5): REV accrued in the period, the sum of the daily "
                    "accruals, signed (negative when the players won)." + _EARNINGS)
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

