"""Monthly commission statements (the Commission service), their lines, and the root fields:
Query.statement/statements, Mutation.closeMonth and the payout workflow (admins only)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Annotated, Any

import strawberry
from strawberry.types import Info

from commissions.service import CloseResult, StatementRecord
from resolvers import statement as resolvers
from resolvers.global_ids import global_id
from schema.affiliate import CpaValidation
from schema.node import Node, register
from schema.pagination import Connection, connection_of
from schema.permissions import AdminOnly


@strawberry.enum(description="open (live) -> closed -> approved -> paid; on_hold: below the minimum "
                             "payout, rolled into the next month.")
class StatementStatus(Enum):
    OPEN = "open"
    CLOSED = "closed"
    ON_HOLD = "on_hold"
    APPROVED = "approved"
    PAID = "paid"


@strawberry.enum(description="CPA (a validation), CPA_REJECTED (listed at zero), REV (a level's daily "
                             "accrual), CPA_ADJUSTMENT and REV_ADJUSTMENT (a change to a closed month, "
                             "the raw change), REV_SETTLEMENT (a closed month settled again with its "
                             "corrected REV: what that changes in what it paid).")
class StatementLineKind(Enum):
    CPA = "cpa"
    CPA_REJECTED = "cpa_rejected"
    REV = "rev"
    CPA_ADJUSTMENT = "cpa_adjustment"
    REV_ADJUSTMENT = "rev_adjustment"
    REV_SETTLEMENT = "rev_settlement"


@strawberry.type(description="One line: a validation (CPA), a daily REV accrual of one level, an "
                             "adjustment naming the closed month and item it corrects, or a closed "
                             "month settled again (REV_SETTLEMENT).")
class StatementLine:
    kind: StatementLineKind
    amount: Decimal = strawberry.field(description="The line's money; on an adjustment, the change: the "
                                                   "item now minus what was accounted for it; on a "
                                                   "REV_SETTLEMENT, what the month settled again pays "
                                                   "(negative: what it takes back).")
    amount_paid: Decimal | None = strawberry.field(
        description="REV_SETTLEMENT lines: what the line pays (= amount; the payable counts it). Null on "
                    "other lines: REV adjustments are paid through the settlement of the month they "
                    "correct, never as they are.")
    level: int | None = strawberry.field(description="The network level; null on REV_SETTLEMENT lines.")
    day: date = strawberry.field(description="The validation's local date or the REV day; on a "
                                             "REV_SETTLEMENT, the last day of the month settled again.")
    validation_id: strawberry.ID | None
    referred_user_id: strawberry.ID | None
    corrects_month: date | None = strawberry.field(
        description="Adjustments: the closed month corrected; REV_SETTLEMENT: the month settled again.")
    description: str

    @classmethod
    def from_row(cls, row: Any) -> StatementLine:
        """A line as ``commissions.service.statement_lines`` reads it."""
        correction = row["kind"].endswith("_adjustment") or row["kind"] == "rev_settlement"
        return cls(
            kind=StatementLineKind(row["kind"]), amount=row["amount"], amount_paid=row["amount_paid"],
            level=row["level"], day=row["day"],
            validation_id=strawberry.ID(str(row["validation_id"])) if row["validation_id"] else None,
            referred_user_id=strawberry.ID(str(row["referred_user_id"])) if row["referred_user_id"] else None,
            corrects_month=row["for_month"] if correction else None, description=row["description"],
        )


@strawberry.type(description="What an affiliate is paid for a local month. Money: CPA + CPA adjustments "
                             "+ REV paid + held from the previous month = payable.")
class Statement(Node):
    statement_id: strawberry.ID = strawberry.field(
        description="The statement's number, '<affiliateId>:<YYYY-MM>' (REST, the exports and the "
                    "workflow mutations take it).")
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
        description="The change in closed months' REV: the sum of the REV adjustment lines' amounts (the "
                    "raw change; what it pays is revSettlements).")
    rev_settlements: Decimal = strawberry.field(
        description="What the closed months whose REV changed pay now, settled again in order with "
                    "their corrected REV (each by its own carryover rule): the sum of the REV_SETTLEMENT "
                    "lines. Negative when they take back REV paid before.")
    adjustments: Decimal
    carryover_in: Decimal = strawberry.field(
        description="Negative REV balance carried in (<= 0): what the last closed month carries out, "
                    "settled again when REV of closed months changed.")
    rev_payable: Decimal = strawberry.field(
        description="REV paid: max(carryoverIn + rev, 0) + revSettlements.")
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
            id=strawberry.ID(global_id("Statement", s.affiliate_id, s.month)),
            statement_id=strawberry.ID(f"{s.affiliate_id}:{s.month:%Y-%m}"),
            affiliate_id=strawberry.ID(str(s.affiliate_id)), owner=s.affiliate_id,
            month=s.month, status=StatementStatus(s.status),
            plan_id=strawberry.ID(str(s.plan_id)), plan_version_id=strawberry.ID(str(s.plan_version_id)),
            negative_carryover=s.negative_carryover, min_payout=s.min_payout,
            cpa_validated=s.cpa_validated, cpa_rejected=s.cpa_rejected, cpa=s.cpa, rev=s.rev,
            cpa_adjustments=s.cpa_adjustments, rev_adjustments=s.rev_adjustments,
            rev_settlements=s.rev_settlements, adjustments=s.adjustments,
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

    @strawberry.field(deprecation_reason="Use statementsConnection: the same statements as a connection "
                                         "(opaque cursors, pageInfo, totalCount).")
    async def statements(
        self, info: Info, month: date, affiliate_id: strawberry.ID | None = None,
        status: StatementStatus | None = None, first: int | None = 20, after: strawberry.ID | None = None,
    ) -> list[Statement]:
        found = await resolvers.statements(info.context, month, affiliate_id,
                                           status.value if status is not None else None, first, after)
        return [Statement.from_record(s) for s in found]

    @strawberry.field
    async def statements_connection(
        self, info: Info, month: date, affiliate_id: strawberry.ID | None = None,
        status: StatementStatus | None = None, first: int | None = 20,
        after: Annotated[str | None, strawberry.argument(description="A cursor this connection returned.")]
        = None,
    ) -> Connection[Statement]:
        page = await resolvers.statements_connection(
            info.context, month, affiliate_id, status.value if status is not None else None, first, after)
        return connection_of(page, Statement.from_record)


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

    @strawberry.field(permission_classes=[AdminOnly],
                      description="Reject one validation (one level's row) with a reason, whatever its "
                                  "status: a paid one (a chargeback) is recovered by a negative CPA "
                                  "adjustment in the first open month. Audited.")
    async def reject_cpa_validation(self, info: Info, id: strawberry.ID, reason: str) -> CpaValidation:
        return CpaValidation.from_row(await resolvers.reject_cpa_validation(info.context, id, reason))

    @strawberry.field(permission_classes=[AdminOnly],
                      description="Reject every validation of a referred user (its row at each level of "
                                  "its upline) not rejected yet, each as rejectCpaValidation does; "
                                  "returns those rejected. Audited, one entry per validation.")
    async def reject_user_cpa_validations(
        self, info: Info, user_id: strawberry.ID, reason: str
    ) -> list[CpaValidation]:
        rows = await resolvers.reject_user_cpa_validations(info.context, user_id, reason)
        return [CpaValidation.from_row(r) for r in rows]


register("Statement", Statement.from_record)
