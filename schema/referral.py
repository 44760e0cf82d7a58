"""An affiliate's referral at some level (``affiliate_referrals``)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated

import strawberry
from sqlalchemy.engine import Row
from strawberry.types import Info

from schema.enums import ReferralStatus

if TYPE_CHECKING:
    from schema.affiliate import Affiliate


@strawberry.type(description="A user in the level-`level` network of the affiliate.")
class Referral:
    referred_user_id: strawberry.ID
    level: int
    referral_date: datetime
    status: ReferralStatus
    validation_date: datetime | None = strawberry.field(description="The user's qualifying instant.")
    total_deposits: Decimal = strawberry.field(description="The user's own approved deposits.")
    total_bets: Decimal = strawberry.field(description="The user's own total stake.")
    cpa_amount: Decimal = strawberry.field(description="What the affiliate got for this user at this level.")
    user_id: strawberry.Private[int]

    @strawberry.field(description="The referred user as an affiliate; null when it is not one.")
    async def referred_affiliate(
        self, info: Info
    ) -> Annotated[Affiliate, strawberry.lazy("schema.affiliate")] | None:
        from schema.affiliate import Affiliate

        row = await info.context.loaders.affiliate_by_id.load(self.user_id)
        return Affiliate.shown_to(info.context.viewer, row) if row is not None else None

    @classmethod
    def from_row(cls, row: Row) -> Referral:
        return cls(
            referred_user_id=strawberry.ID(str(row.referred_id)),
            user_id=row.referred_id,
            level=row.mlm_level,
            referral_date=row.referral_date,
            status=ReferralStatus(row.status),
            validation_date=row.validation_date,
            total_deposits=row.total_deposits,
            total_bets=row.total_bets,
            cpa_amount=row.cpa_amount,
        )
