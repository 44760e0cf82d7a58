"""Monthly commission statements (the Commission service), their lines, and the root fields:
Query.statement/statements, Mutation.closeMonth and the payout workflow (admins only)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any

import strawberry
from strawberry.types import Info

from commissions.service import CloseResult, StatementRecord
from resolvers import statement as resolvers
from schema.affiliate import CpaValidation
from schema.permissions import AdminOnly


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

    @classmethod
    def from_row(cls, row: Any) -> StatementLine:
        """A line as ``commissions.service.statement_lines`` reads it."""
        adjustment = row["kind"].endswith("_adjustment")
        return cls(
            kind=StatementLineKind(row["kind"]), amount=row["amount"], amount_paid=row["amount_paid"],
            level=row["level"], day=row["day"],
            validation_id=strawberry.ID(str(row["validation_id"])) if row["validation_id"] else None,
            referred_user_id=strawberry.ID(str(row["referred_user_id"])) if row["referred_user_id"] else None,
            corrects_month=row["for_month"] if adjustment else None, description=row["description"],
        )


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
    async def lines(self, info: Info) -> list[StatementLine]:
        rows = await resolvers.statement_lines(info.context, self.owner, self.month,
                                               self.status is StatementStatus.OPEN)
        return [StatementLine.from_row(r) for r in rows]

    @classmethod
    def from_record(cls, s: StatementRecord) -> Statement:
        return cls(
            id=strawberry.ID(f"{s.affiliate_id}:{s.month:%Y-%m}"),
            affiliate_id=strawberry.ID(str(s.affiliate_id)), owner=s.affiliate_id,
            month=s.month, status=StatementStatus(s.status),
            plan_id=strawberry.ID(str(s.plan_id)), plan_version_id=strawberry.ID(str(s.plan_version_id)),
            negative_carryover=s.negative_carryover, min_payout=s.min_payout,
            cpa_validated=s.cpa_validated, cpa_rejected=s.cpa_rejected, cpa=s.cpa, rev=s.rev,
            cpa_adjustments=s.cpa_adjustments, rev_adjustments=s.rev_adjustments, adjustments=s.adjustments,
            carryover_in=s.carryover_in, rev_payable=s.rev_payable, carryover_out=s.carryover_out,
            held_in=s.held_in, payable=s.payable, held_out=s.held_out, below_min_payout=s.below_min_payout,
            closed_at=s.closed_at, approved_at=s.approved_at, paid_at=s.paid_at,
            payment_reference=s.payment_reference,
        )


@strawberry.type
class CloseMonthResult:
    months: list[date] = strawberry.field(description="Months closed, oldest first.")
    statements: int
    lines: int

    @classmethod
    def from_record(cls, result: CloseResult) -> CloseMonthResult:
        return cls(months=result.months, statements=result.statements, lines=result.lines)


@strawberry.type
class StatementQueries:
    @strawberry.field
    async def statement(self, info: Info, id: strawberry.ID) -> Statement | None:
        found = await resolvers.statement(info.context, id)
        return Statement.from_record(found) if found is not None else None

    @strawberry.field
    async def statements(
        self, info: Info, month: date, affiliate_id: strawberry.ID | None = None,
        status: StatementStatus | None = None, first: int | None = 20, after: strawberry.ID | None = None,
    ) -> list[Statement]:
        found = await resolvers.statements(info.context, month, affiliate_id,
                                           status.value if status is not None else None, first, after)
        return [Statement.from_record(s) for s in found]


@strawberry.type
class StatementMutations:
    @strawberry.field(permission_classes=[AdminOnly])
    async def close_month(self, info: Info, month: date) -> CloseMonthResult:
        return CloseMonthResult.from_record(await resolvers.close_month(info.context, month))

    @strawberry.field(permission_classes=[AdminOnly])
    async def approve_statement(self, info: Info, id: strawberry.ID) -> Statement:
        return Statement.from_record(await resolvers.approve_statement(info.context, id))

    @strawberry.field(permission_classes=[AdminOnly])
    async def mark_statement_paid(self, info: Info, id: strawberry.ID, reference: str) -> Statement:
        return Statement.from_record(await resolvers.mark_statement_paid(info.context, id, reference))

    @strawberry.field(permission_classes=[AdminOnly])
    async def reject_cpa_validation(self, info: Info, id: strawberry.ID, reason: str) -> CpaValidation:
        return CpaValidation.from_row(await resolvers.reject_cpa_validation(info.context, id, reason))
