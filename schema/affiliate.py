"""The Affiliate type (``affiliates``) with its relations, and the list inputs."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated

import strawberry
from sqlalchemy.engine import Row
from strawberry.types import Info

from resolvers import network as network_resolvers
from resolvers import referral as referral_resolvers
from resolvers import summary as summary_resolvers
from resolvers import transaction as transaction_resolvers
from resolvers import validation as validation_resolvers
from resolvers.viewer import Viewer
from schema.enums import (
    AffiliateOrderField,
    AffiliateStatus,
    OrderDirection,
    PeriodType,
    ReferralStatus,
    TransactionType,
)
from schema.network import Network
from schema.pagination import Connection
from schema.referral import Referral
from schema.summary import PeriodicSummary
from schema.transaction import Transaction
from schema.validation import CpaValidation

First = Annotated[int | None, strawberry.argument(description="Page size, 0..100.")]
After = Annotated[str | None, strawberry.argument(description="A cursor this list returned.")]
Level = Annotated[int | None, strawberry.argument(description="Network level, 1..5.")]


@strawberry.type(description="An affiliate and its whole five-level network, all figures precomputed.")
class Affiliate:
    id: strawberry.ID
    name: str
    email: str | None
    phone: str | None
    status: AffiliateStatus
    total_referrals: int = strawberry.field(description="Direct (level-1) referrals.")
    total_validated_referrals: int = strawberry.field(description="Level-1 CPA validations.")
    total_deposits: Decimal
    total_withdrawals: Decimal
    total_bets: Decimal
    total_ggr: Decimal
    total_cpa_earned: Decimal
    total_rev_earned: Decimal
    total_network_size: int
    rank_cpa: int | None = strawberry.field(description="Among active affiliates; null otherwise.")
    rank_referrals: int | None
    registered_at: datetime | None
    affiliate_id: strawberry.Private[int]

    @classmethod
    def from_row(cls, row: Row) -> Affiliate:
        return cls(
            id=strawberry.ID(str(row.affiliate_id)),
            affiliate_id=row.affiliate_id,
            name=row.name,
            email=row.email,
            phone=row.phone,
            status=AffiliateStatus(row.status),
            total_referrals=row.total_referrals,
            total_validated_referrals=row.total_validated_referrals,
            total_deposits=row.total_deposits,
            total_withdrawals=row.total_withdrawals,
            total_bets=row.total_bets,
            total_ggr=row.total_ggr,
            total_cpa_earned=row.total_cpa_earned,
            total_rev_earned=row.total_rev_earned,
            total_network_size=row.total_network_size,
            rank_cpa=row.rank_cpa,
            rank_referrals=row.rank_referrals,
            registered_at=row.registered_at,
        )

    @classmethod
    def shown_to(cls, viewer: Viewer, row: Row) -> Affiliate:
        """The affiliate with its personal data as ``viewer`` may see it (the Viewer decides)."""
        affiliate = cls.from_row(row)
        affiliate.name, affiliate.email, affiliate.phone = viewer.personal_data(
            affiliate.affiliate_id, affiliate.name, affiliate.email, affiliate.phone
        )
        return affiliate

    @strawberry.field
    async def network(self, info: Info) -> Network:
        return await network_resolvers.network_of(info, self.affiliate_id)

    @strawberry.field(description="Newest referral first.")
    async def referrals(
        self, info: Info, level: Level = None, status: ReferralStatus | None = None,
        first: First = 20, after: After = None,
    ) -> Connection[Referral]:
        return await referral_resolvers.referrals_of(
            info, self.affiliate_id, level=level, status=status, first=first, after=after
        )

    @strawberry.field(description="Newest validation first.")
    async def cpa_validations(
        self, info: Info, level: Level = None, first: First = 20, after: After = None
    ) -> Connection[CpaValidation]:
        return await validation_resolvers.cpa_validations_of(
            info, self.affiliate_id, level=level, first=first, after=after
        )

    @strawberry.field(description="Newest first; `from` inclusive, `to` exclusive; a DateTime "
                                  "without offset is read in the business time zone.")
    async def transactions(
        self, info: Info, type: TransactionType | None = None, level: Level = None,
        from_: Annotated[datetime | None, strawberry.argument(name="from")] = None,
        to: datetime | None = None, first: First = 20, after: After = None,
    ) -> Connection[Transaction]:
        return await transaction_resolvers.transactions_of(
            info, self.affiliate_id, type=type, level=level, start=from_, end=to,
            first=first, after=after,
        )

    @strawberry.field(description="Oldest period first; `from`/`to` bound the period start "
                                  "(inclusive); `last` keeps only the most recent N periods.")
    async def summaries(
        self, info: Info, period: PeriodType,
        from_: Annotated[date | None, strawberry.argument(name="from")] = None,
        to: date | None = None,
        last: Annotated[int | None, strawberry.argument(description="1..1000")] = None,
    ) -> list[PeriodicSummary]:
        return await summary_resolvers.summaries_of(
            info, self.affiliate_id, period=period, start=from_, end=to, last=last
        )

    @strawberry.field(description="p1..p5: the referrer, the referrer's referrer, and so on.")
    async def upline(self, info: Info) -> list[Affiliate]:
        loaders = info.context.loaders
        ids = await loaders.upline_ids_by_affiliate_id.load(self.affiliate_id)
        rows = await loaders.affiliate_by_id.load_many(ids)
        viewer = info.context.viewer
        return [Affiliate.shown_to(viewer, r) for r in rows if r is not None]


@strawberry.input
class AffiliateFilter:
    status: AffiliateStatus | None = None
    search: str | None = strawberry.field(
        default=None, description="Case-insensitive text contained in the name or the email."
    )


@strawberry.input
class AffiliateOrder:
    field: AffiliateOrderField = AffiliateOrderField.TOTAL_CPA_EARNED
    direction: OrderDirection = OrderDirection.DESC
