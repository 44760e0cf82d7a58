"""Monthly commission statements (the Commission service) and their lines."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from enum import Enum

import strawberry


@strawberry.enum(description="open (live) -> closed -> approved -> paid; on_hold: below the minimum "
                             "payout, rolled into the next month.")
class StatementStatus(Enum):
    OPEN = "open"
    CLOSED = "closed"
    ON_HOLD = "on_hold"
    APPROVED = "approved"
    PAID = "paid"


@strawberry.enum
class StatementLineKind(Enum):
    CPA = "cpa"
    CPA_REJECTED = "cpa_rejected"
    REV = "rev"
    CPA_ADJUSTMENT = "cpa_adjustment"
    REV_ADJUSTMENT = "rev_adjustment"


@strawberry.type(description="One line: a validation (CPA), a daily REV accrual of one level, or an "
                             "adjustment naming the closed month and item it corrects.")
class StatementLine:
    kind: StatementLineKind
    amount: Decimal = strawberry.field(description="The line's money; on an adjustment, the change: the "
                                                   "item now minus what was accounted for it.")
    amount_paid: Decimal | None = strawberry.field(
        description="REV adjustments of a month settled with negative carryover off: what the change "
                    "pays, max(0, that month's REV after it) - max(0, its REV before it); the payable "
                    "counts this, not amount. Null on other lines (REV adjustments of months settled "
                    "with negative carryover on join the month's REV balance).")
    level: int
    day: date = strawberry.field(description="The validation's local date or the REV day.")
    validation_id: strawberry.ID | None
    referred_user_id: strawberry.ID | None
    corrects_month: date | None = strawberry.field(description="Adjustments: the closed month corrected.")
    description: str


@strawberry.type(description="What an affiliate is paid for a local month. Money: CPA + CPA adjustments "
                             "+ REV paid + held from the previous month = payable.")
class Statement:
    id: strawberry.ID = strawberry.field(description="'<affiliateId>:<YYYY-MM>'.")
    affiliate_id: strawberry.ID
    month: date
    status: StatementStatus
    plan_id: strawberry.ID
    plan_version_id: strawberry.ID = strawberry.field(description="In force on the month's last day.")
    negative_carryover: bool
    min_payout: Decimal
    cpa_validated: Decimal = strawberry.field(description="Every validation dated in the month "
                                                          "(= the monthly summary's cpaEarned).")
    cpa_rejected: Decimal = strawberry.field(description="Of which rejected: not paid.")
    cpa: Decimal = strawberry.field(description="cpaValidated - cpaRejected.")
    rev: Decimal = strawberry.field(description="Sum of the month's daily REV (= the summary's revEarned).")
    cpa_adjustments: Decimal
    rev_adjustments: Decimal = strawberry.field(
        description="The change in closed months' REV: the sum of the REV adjustment lines' amounts.")
    adjustments: Decimal
    carryover_in: Decimal = strawberry.field(description="Negative REV balance carried in (<= 0).")
    rev_payable: Decimal = strawberry.field(
        description="REV paid: max(carryoverIn + rev + the revAdjustments of months settled with "
                    "negative carryover on, 0) + the amountPaid of the REV adjustments of months "
                    "settled with it off (negative when those take back REV paid before).")
    carryover_out: Decimal = strawberry.field(description="Negative REV balance carried to next month.")
    held_in: Decimal = strawberry.field(description="Payable of on-hold months rolled into this one.")
    payable: Decimal
    held_out: Decimal = strawberry.field(description="Rolled into the next month when on hold.")
    below_min_payout: bool
    closed_at: datetime | None
    approved_at: datetime | None
    paid_at: datetime | None
    payment_reference: str | None
    owner: strawberry.Private[int]

    @strawberry.field(description="Every line, traceable to validations and daily REV.")
    async def lines(self, info: strawberry.Info) -> list[StatementLine]:
        from resolvers.statement import statement_lines

        return await statement_lines(info, self)


@strawberry.type
class CloseMonthResult:
    months: list[date] = strawberry.field(description="Months closed, oldest first.")
    statements: int
    lines: int
