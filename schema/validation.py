"""CPA validations (the ledger) and the result of validating on demand."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated

import strawberry
from sqlalchemy.engine import Row
from strawberry.scalars import JSON
from strawberry.types import Info

from schema.enums import CpaStatus

if TYPE_CHECKING:
    from schema.affiliate import Affiliate


@strawberry.type(description="One ledger row: what an affiliate earns for a user at one level.")
class CpaValidation:
    id: strawberry.ID
    affiliate_id: strawberry.ID
    referred_user_id: strawberry.ID
    cpa_level: int
    cpa_amount: Decimal
    cpa_status: CpaStatus
    validation_date: datetime = strawberry.field(description="The qualifying instant t*.")
    user_deposits: Decimal = strawberry.field(description="The user's deposits at t*.")
    user_bets: Decimal = strawberry.field(description="The user's total stake at t*.")
    days_active: int = strawberry.field(description="The user's active days at t*.")
    validation_criteria: JSON = strawberry.field(description="The criteria in force at t*.")
    created_at: datetime
    owner_id: strawberry.Private[int]

    @strawberry.field
    async def affiliate(
        self, info: Info
    ) -> Annotated[Affiliate, strawberry.lazy("schema.affiliate")] | None:
        from schema.affiliate import Affiliate

        row = await info.context.loaders.affiliate_by_id.load(self.owner_id)
        return Affiliate.shown_to(info.context.viewer, row) if row is not None else None

    @classmethod
    def from_row(cls, row: Row) -> CpaValidation:
        return cls(
            id=strawberry.ID(str(row.id)),
            affiliate_id=strawberry.ID(str(row.affiliate_id)),
            owner_id=row.affiliate_id,
            referred_user_id=strawberry.ID(str(row.referred_user_id)),
            cpa_level=row.cpa_level,
            cpa_amount=row.cpa_amount,
            cpa_status=CpaStatus(row.cpa_status),
            validation_date=row.validation_date,
            user_deposits=row.user_deposits,
            user_bets=row.user_bets,
            days_active=row.days_active,
            validation_criteria=row.validation_criteria,
            created_at=row.created_at,
        )


@strawberry.type
class ValidateCpaResult:
    affiliate_id: strawberry.ID
    validations: list[CpaValidation] = strawberry.field(
        description="The validations this run wrote (empty when nobody new qualified)."
    )
