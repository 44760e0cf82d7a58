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
from schema.enums import described_enum
from schema.node import Node, register
from schema.pagination import Connection, connection_of
from schema.permissions import AdminOnly


@described_enum(
    "open (live) -> closed -> approved -> paid; on_hold: below the minimum payout, rolled into the next "
    "month.",
    OPEN="The month is not closed: the statement is computed live from the current data.",
    CLOSED="The month was closed: the statement is frozen, waiting for approval.",
    ON_HOLD="Closed below the minimum payout (or at zero or less): nothing is paid; its payable rolls "
            "into the next month's heldIn.",
    APPROVED="Approved by an admin: its validations are approved, and it waits for payment.",
    PAID="Paid, with the payment's reference; its validations are paid.",
)
class StatementStatus(Enum):
    OPEN = "open"
    CLOSED = "closed"
    ON_HOLD = "on_hold"
    APPROVED = "approved"
    PAID = "paid"


@described_enum(
    "CPA (a validation), CPA_REJECTED (listed at zero), REV (a level's daily accrual), CPA_ADJUSTMENT and "
    "REV_ADJUSTMENT (a change to a closed month, the raw change), REV_SETTLEMENT (a closed month settled "
    "again with its corrected REV: what that changes in what it paid).",
    CPA="One validation dated in the month: its CPA amount at its level.",
    CPA_REJECTED="A validation of the month that was rejected: listed at 0.00, not paid.",
    REV="One level's REV accrual of one local day of the month (signed: negative when the network won).",
    CPA_ADJUSTMENT="A change to the CPA of a closed month (a late validation, a rejection, a chargeback): "
                   "the item now minus what was accounted for it.",
    REV_ADJUSTMENT="A change to one level's daily REV of a closed month: the raw change, paid through that "
                   "month's REV_SETTLEMENT line.",
    REV_SETTLEMENT="A closed month settled again with its corrected REV: what it is paid now minus what it "
                   "was paid (negative: taken back).",
)
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
    kind: StatementLineKind = strawberry.field(description="What the line is: a validation, a daily REV "
                                                           "accrual, an adjustment or a settlement.")
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
    validation_id: strawberry.ID | None = strawberry.field(
        description="CPA lines: the validation's number (CpaValidation.validationId); null on REV lines.")
    referred_user_id: strawberry.ID | None = strawberry.field(
        description="CPA lines: the number of the user who qualified; null on REV lines.")
    corrects_month: date | None = strawberry.field(
        description="Adjustments: the closed month corrected; REV_SETTLEMENT: the month settled again.")
    description: str = strawberry.field(description="The line in words (for people, not for parsing).")

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
    affiliate_id: strawberry.ID = strawberry.field(description="The number of the affiliate paid.")
    month: date = strawberry.field(description="The local month, named by its first day (2025-03-01).")
    status: StatementStatus = strawberry.field(description="Where the statement is in the payout "
                                                           "workflow.")
    plan_id: strawberry.ID = strawberry.field(description="The number of the affiliate's plan on the "
                                                          "month's last local day.")
    plan_version_id: strawberry.ID = strawberry.field(description="In force on the month's last day.")
    negative_carryover: bool = strawberry.field(
        description="The plan version's rule: a negative REV balance is carried to the next month (true) "
                    "or dropped (false).")
    min_payout: Decimal = strawberry.field(description="The plan version's minimum payout in reais: a "
                                                       "smaller payable is held.")
    cpa_validated: Decimal = strawberry.field(description="Every validation dated in the month "
                                                          "(= the monthly summary's cpaEarned).")
    cpa_rejected: Decimal = strawberry.field(description="Of which rejected: not paid.")
    cpa: Decimal = strawberry.field(description="cpaValidated - cpaRejected.")
    rev: Decimal = strawberry.field(description="Sum of the month's daily REV (= the summary's revEarned).")
    cpa_adjustments: Decimal = strawberry.field(
        description="Changes to closed months' CPA, in reais: the sum of the CPA adjustment lines.")
    rev_adjustments: Decimal = strawberry.field(
        description="The change in closed months' REV: the sum of the REV adjustment lines' amounts (the "
                    "raw change; what it pays is revSettlements).")
    rev_settlements: Decimal = strawberry.field(
        description="What the closed months whose REV changed pay now, settled again in order with "
                    "their corrected REV (each by its own carryover rule): the sum of the REV_SETTLEMENT "
                    "lines. Negative when they take back REV paid before.")
    adjustments: Decimal = strawberry.field(description="cpaAdjustments + revAdjustments, in reais.")
    carryover_in: Decimal = strawberry.field(
        description="Negative REV balance carried in (<= 0): what the last closed month carries out, "
                    "settled again when REV of closed months changed.")
    rev_payable: Decimal = strawberry.field(
        description="REV paid: max(carryoverIn + rev, 0) + revSettlements.")
    carryover_out: Decimal = strawberry.field(description="Negative REV balance carried to next month.")
    held_in: Decimal = strawberry.field(description="Payable of on-hold months rolled into this one.")
    payable: Decimal = strawberry.field(description="What the month pays, in reais: cpa + cpaAdjustments "
                                                    "+ revPayable + heldIn.")
    held_out: Decimal = strawberry.field(description="Rolled into the next month when on hold.")
    below_min_payout: bool = strawberry.field(
        description="payable is below minPayout (or not positive): the month is held (ON_HOLD once "
                    "closed).")
    closed_at: datetime | None = strawberry.field(description="When the month was closed; null while "
                                                              "open.")
    approved_at: datetime | None = strawberry.field(description="When an admin approved it; null before.")
    paid_at: datetime | None = strawberry.field(description="When it was marked paid; null before.")
    payment_reference: str | None = strawberry.field(
        description="The payment's reference given to markStatementPaid; null before.")
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


@strawberry.type(description="What closeMonth froze.")
class CloseMonthResult:
    months: list[date] = strawberry.field(description="Months closed, oldest first.")
    statements: int = strawberry.field(description="How many statements were stored, over every month "
                                                   "closed.")
    lines: int = strawberry.field(description="How many statement lines were stored, over every month "
                                              "closed.")

    @classmethod
    def from_record(cls, result: CloseResult) -> CloseMonthResult:
        return cls(months=result.months, statements=result.statements, lines=result.lines)


StatementId = Annotated[strawberry.ID, strawberry.argument(
    description="The statement's number '<affiliateId>:<YYYY-MM>' (statementId) or its global `id`.")]
Month = Annotated[date, strawberry.argument(
    description="The local month, named by its first day (2025-03-01).")]
OwnerId = Annotated[strawberry.ID | None, strawberry.argument(
    description="Only this affiliate's statement: its number or its global `id` (null: every affiliate "
                "the token may see).")]
StatusFilter = Annotated[StatementStatus | None, strawberry.argument(
    description="Only statements in this status (null: any).")]
PageSize = Annotated[int | None, strawberry.argument(description="Page size, 0..100.")]


@strawberry.type
class StatementQueries:
    @strawberry.field(description="One affiliate's statement of one month; null when there is none or the "
                                  "token may not see it (an affiliate token: its own statements only).")
    async def statement(self, info: Info, id: StatementId) -> Statement | None:
        found = await resolvers.statement(info.context, id)
        return Statement.from_record(found) if found is not None else None

    @strawberry.field(description="The month's statements by affiliate number as a plain list, paged by "
                                  "the last affiliate number (an affiliate token: its own only).",
                      deprecation_reason="Use statementsConnection: the same statements as a connection "
                                         "(opaque cursors, pageInfo, totalCount).")
    async def statements(
        self, info: Info, month: Month, affiliate_id: OwnerId = None, status: StatusFilter = None,
        first: PageSize = 20,
        after: Annotated[strawberry.ID | None, strawberry.argument(
            description="An affiliate number: the page starts after it (null: from the start).")] = None,
    ) -> list[Statement]:
        found = await resolvers.statements(info.context, month, affiliate_id,
                                           status.value if status is not None else None, first, after)
        return [Statement.from_record(s) for s in found]

    @strawberry.field(description="The month's statements by affiliate number (an affiliate token: its own "
                                  "only); totalCount settles an open month's statements again, so ask "
                                  "for it only when needed.")
    async def statements_connection(
        self, info: Info, month: Month, affiliate_id: OwnerId = None, status: StatusFilter = None,
        first: PageSize = 20,
        after: Annotated[str | None, strawberry.argument(description="A cursor this connection returned.")]
        = None,
    ) -> Connection[Statement]:
        page = await resolvers.statements_connection(
            info.context, month, affiliate_id, status.value if status is not None else None, first, after)
        return connection_of(page, Statement.from_record)


@strawberry.type
class StatementMutations:
    @strawberry.field(permission_classes=[AdminOnly],
                      description="Close the month and every earlier open month, oldest first: their "
                                  "statements are frozen as they are now. Admins only; audited.")
    async def close_month(self, info: Info, month: Month) -> CloseMonthResult:
        return CloseMonthResult.from_record(await resolvers.close_month(info.context, month))

    @strawberry.field(permission_classes=[AdminOnly],
                      description="closed -> approved; its pending validations become approved. Admins "
                                  "only; audited.")
    async def approve_statement(self, info: Info, id: StatementId) -> Statement:
        return Statement.from_record(await resolvers.approve_statement(info.context, id))

    @strawberry.field(permission_classes=[AdminOnly],
                      description="approved -> paid, with the payment's reference; its validations "
                                  "become paid. Admins only; audited.")
    async def mark_statement_paid(
        self, info: Info, id: StatementId,
        reference: Annotated[str, strawberry.argument(
            description="The payment's reference (a bank transfer id, ...); not empty.")],
    ) -> Statement:
        return Statement.from_record(await resolvers.mark_statement_paid(info.context, id, reference))

    @strawberry.field(permission_classes=[AdminOnly],
                      description="Reject one validation (one level's row) with a reason, whatever its "
                                  "status: a paid one (a chargeback) is recovered by a negative CPA "
                                  "adjustment in the first open month. Audited.")
    async def reject_cpa_validation(
        self, info: Info,
        id: Annotated[strawberry.ID, strawberry.argument(
            description="The validation's number (validationId) or its global `id`.")],
        reason: Annotated[str, strawberry.argument(description="Why it is rejected (audited); not empty.")],
    ) -> CpaValidation:
        return CpaValidation.from_row(await resolvers.reject_cpa_validation(info.context, id, reason))

    @strawberry.field(permission_classes=[AdminOnly],
                      description="Reject every validation of a referred user (its row at each level of "
                                  "its upline) not rejected yet, each as rejectCpaValidation does; "
                                  "returns those rejected. Audited, one entry per validation.")
    async def reject_user_cpa_validations(
        self, info: Info,
        user_id: Annotated[strawberry.ID, strawberry.argument(
            description="The referred user's number (the operator's user id).")],
        reason: Annotated[str, strawberry.argument(description="Why they are rejected (audited); not "
                                                               "empty.")],
    ) -> list[CpaValidation]:
        rows = await resolvers.reject_user_cpa_validations(info.context, user_id, reason)
        return [CpaValidation.from_row(r) for r in rows]


register("Statement", Statement.from_record)
