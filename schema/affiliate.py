"""The affiliate graph: ``Affiliate`` (``affiliates``) with its relations, ``Referral``
(``affiliate_referrals``) and ``CpaValidation`` (the ledger), and the affiliate root fields.

The three types point at each other (a referral's affiliate, a validation's affiliate), so
they live in one module: imports stay one-way. Each field calls a resolver with the request
context and turns the rows it returns into these types; who sees what is decided below the
resolvers (``resolvers.viewer``)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from resolvers import affiliate as affiliate_resolvers
from resolvers import network as network_resolvers
from resolvers import referral as referral_resolvers
from resolvers import summary as summary_resolvers
from resolvers import transaction as transaction_resolvers
from resolvers import validation as validation_resolvers
from resolvers.global_ids import global_id
from schema.enums import (
    AffiliateOrderField,
    AffiliateStatus,
    CpaStatus,
    OrderDirection,
    PeriodType,
    RankingMetric,
    ReferralStatus,
    TransactionType,
)
from schema.network import Network
from schema.node import Node, register
from schema.pagination import Connection, connection_of
from schema.summary import PeriodicSummary
from schema.transaction import Transaction

First = Annotated[int | None, strawberry.argument(description="Page size, 0..100.")]
After = Annotated[str | None, strawberry.argument(description="A cursor this list returned.")]
Level = Annotated[int | None, strawberry.argument(description="Network level, 1..5.")]


# The downline policy (resolvers.viewer): what an affiliate token reads as null of a downline.
_EARNINGS = " BRL. The affiliate's own earnings: null for another affiliate's token."
_BEYOND = (" Null for another affiliate's token (these totals reach beyond its level 5; "
           "`network.levels` has the levels it may see).")
# What the totals cover (METRICS.md: `affiliates`), as of the last ETL run.
_WHOLE = "Whole network (levels 1-5, the sum of `network.levels`), all time, as of the last ETL run: "


def _affiliate_or_none(row: Any | None) -> Affiliate | None:
    return Affiliate.from_row(row) if row is not None else None


@strawberry.type(description="An affiliate and its whole five-level network, all figures precomputed.")
class Affiliate(Node):
    affiliate_id: strawberry.ID = strawberry.field(
        description="The affiliate's number: the operator's user id (REST and exports use it; "
                    "`affiliate(id:)` takes it).")
    name: str = strawberry.field(description="The affiliate's name (`cadastro.nome`); masked ('A*** S***') "
                                             "for another affiliate's token.")
    email: str | None = strawberry.field(description="E-mail: masked for analyst tokens, null for another "
                                                     "affiliate's token (personal data).")
    phone: str | None = strawberry.field(description="Phone number: masked for analyst tokens, null for "
                                                     "another affiliate's token (personal data).")
    status: AffiliateStatus = strawberry.field(description="The operator's user status as of the last ETL "
                                                           "run.")
    total_referrals: int | None = strawberry.field(
        description="Level 1 only: direct referrals (users whose referrer is this affiliate now), as of "
                    "the last ETL run; null for a downline at the viewer's level 5.")
    total_validated_referrals: int | None = strawberry.field(
        description="Level 1 only: the affiliate's level-1 CPA validations, all time; null for a "
                    "downline at the viewer's level 5.")
    total_deposits: Decimal | None = strawberry.field(
        description=_WHOLE + "approved deposits of its users, BRL." + _BEYOND)
    total_withdrawals: Decimal | None = strawberry.field(
        description=_WHOLE + "approved withdrawals of its users, BRL." + _BEYOND)
    total_bets: Decimal | None = strawberry.field(description=_WHOLE + "stakes of its users, BRL." + _BEYOND)
    total_ggr: Decimal | None = strawberry.field(
        description=_WHOLE + "GGR of its users (stakes minus wins; negative when the players won), "
                    "BRL." + _BEYOND)
    total_cpa_earned: Decimal | None = strawberry.field(
        description=_WHOLE + "CPA earned, every validation whatever its status (statements show "
                    "what is paid)." + _EARNINGS)
    total_rev_earned: Decimal | None = strawberry.field(
        description=_WHOLE + "REV accrued, the sum of the daily accruals, signed." + _EARNINGS)
    total_network_size: int | None = strawberry.field(
        description=_WHOLE + "how many users the five levels hold." + _BEYOND)
    rank_cpa: int | None = strawberry.field(
        description="Rank by totalCpaEarned among active affiliates (1 = highest; ties share a rank); "
                    "null for other statuses, and for another affiliate's token.")
    rank_referrals: int | None = strawberry.field(
        description="Rank by totalValidatedReferrals among active affiliates (1 = highest; ties share a "
                    "rank); null for other statuses, and for a downline at the viewer's level 5.")
    registered_at: datetime | None = strawberry.field(
        description="When the user registered at the operator (`cadastro.criado_em`), an instant with "
                    "offset; null when the source has none.")
    number: strawberry.Private[int]

    @classmethod
    def from_row(cls, row: Any) -> Affiliate:
        """An ``affiliates_ranked`` row whose personal data the resolver already shaped for
        the viewer."""
        return cls(
            id=strawberry.ID(global_id("Affiliate", row.affiliate_id)),
            affiliate_id=strawberry.ID(str(row.affiliate_id)),
            number=row.affiliate_id,
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

    @strawberry.field(description="The affiliate's five network levels (all time): sizes, activity and, "
                                  "for its own token and staff, its CPA and REV by level.")
    async def network(self, info: Info) -> Network:
        row, depth = await network_resolvers.network_of(info.context, self.number)
        return Network.from_row(row, depth)

    @strawberry.field(description="Newest referral first. Of a level-L downline, an affiliate "
                                  "token sees its levels 1..5-L only.")
    async def referrals(
        self, info: Info, level: Level = None,
        status: Annotated[ReferralStatus | None, strawberry.argument(
            description="Only referrals in this status (null: all).")] = None,
        first: First = 20, after: After = None,
    ) -> Connection[Referral]:
        page = await referral_resolvers.referrals_of(
            info.context, self.number, level=level,
            status=status.value if status is not None else None, first=first, after=after,
        )
        return connection_of(page, Referral.from_row)

    @strawberry.field(description="Newest validation first. Of a level-L downline, an affiliate "
                                  "token sees its levels 1..5-L only, without amounts.")
    async def cpa_validations(
        self, info: Info, level: Level = None, first: First = 20, after: After = None
    ) -> Connection[CpaValidation]:
        page = await validation_resolvers.cpa_validations_of(
            info.context, self.number, level=level, first=first, after=after
        )
        return connection_of(page, CpaValidation.from_row)

    @strawberry.field(description="Newest first; `from` inclusive, `to` exclusive; a DateTime "
                                  "without offset is read in the business time zone. Of a level-L "
                                  "downline, an affiliate token sees its levels 1..5-L only, and "
                                  "none of its CPA and REV. Only the months kept online "
                                  "(FATURE_TRANSACTIONS_RETENTION_MONTHS, 24 by default) are "
                                  "listed: a `from` in an archived month answers the error code "
                                  "ARCHIVED, whose `extensions.months` names the archived months "
                                  "of the range.")
    async def transactions(
        self, info: Info,
        type: Annotated[TransactionType | None, strawberry.argument(
            description="Only movements of this type (null: all).")] = None,
        level: Level = None,
        from_: Annotated[datetime | None, strawberry.argument(
            name="from", description="Earliest instant, inclusive (without an offset: business time "
                                     "zone); null: from the first month online (older months may "
                                     "be archived).")] = None,
        to: Annotated[datetime | None, strawberry.argument(
            description="Latest instant, exclusive (without an offset: business time zone); null: up "
                        "to now.")] = None,
        first: First = 20, after: After = None,
    ) -> Connection[Transaction]:
        page = await transaction_resolvers.transactions_of(
            info.context, self.number, type=type.value if type is not None else None,
            level=level, start=from_, end=to, first=first, after=after,
        )
        return connection_of(page, Transaction.from_row)

    @strawberry.field(description="Oldest period first; `from`/`to` bound the period start "
                                  "(inclusive); `last` keeps only the most recent N periods. Of a "
                                  "level-L downline, an affiliate token sees the totals of its "
                                  "levels 1..5-L, no earnings (none at L = 5).")
    async def summaries(
        self, info: Info,
        period: Annotated[PeriodType, strawberry.argument(
            description="Daily, weekly (ISO, from Monday), monthly or yearly periods, local to the "
                        "business time zone.")],
        from_: Annotated[date | None, strawberry.argument(
            name="from", description="Earliest period start, inclusive (a local date); null: the "
                                     "first period.")] = None,
        to: Annotated[date | None, strawberry.argument(
            description="Latest period start, inclusive (a local date); null: the latest period.")] = None,
        last: Annotated[int | None, strawberry.argument(
            description="Keep only the most recent N periods, 1..1000; null: every period.")] = None,
    ) -> list[PeriodicSummary]:
        rows = await summary_resolvers.summaries_of(
            info.context, self.number, period=period.value, start=from_, end=to, last=last
        )
        return [PeriodicSummary.from_row(r) for r in rows]

    @strawberry.field(description="p1..p5: the referrer, the referrer's referrer, and so on.")
    async def upline(self, info: Info) -> list[Affiliate]:
        rows = await affiliate_resolvers.upline_of(info.context, self.number)
        return [Affiliate.from_row(r) for r in rows]


@strawberry.type(description="A user in the level-`level` network of the affiliate.")
class Referral(Node):
    referred_user_id: strawberry.ID = strawberry.field(
        description="The referred user's number (the operator's user id).")
    level: int = strawberry.field(description="The user's level in the affiliate's network, 1..5 (1: a "
                                              "direct referral).")
    referral_date: datetime = strawberry.field(
        description="When the user was referred (`tracked.criado_em`), an instant with offset.")
    status: ReferralStatus = strawberry.field(
        description="Whether the user has qualified for CPA (validated) or not yet (pending).")
    validation_date: datetime | None = strawberry.field(description="The user's qualifying instant.")
    total_deposits: Decimal = strawberry.field(description="The user's own approved deposits.")
    total_bets: Decimal = strawberry.field(description="The user's own total stake.")
    cpa_amount: Decimal | None = strawberry.field(
        description="What the affiliate got for this user at this level; null for another affiliate's token.")
    user_id: strawberry.Private[int]

    @strawberry.field(description="The referred user as an affiliate; null when it is not one.")
    async def referred_affiliate(self, info: Info) -> Affiliate | None:
        return _affiliate_or_none(await affiliate_resolvers.affiliate_by_id(info.context, self.user_id))

    @classmethod
    def from_row(cls, row: Any) -> Referral:
        return cls(
            id=strawberry.ID(global_id("Referral", row.referrer_id, row.referred_id)),
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


@strawberry.type(description="One ledger row: what an affiliate earns for a user at one level.")
class CpaValidation(Node):
    validation_id: strawberry.ID = strawberry.field(
        description="The validation's number (the ledger row's id; REST, exports and "
                    "`rejectCpaValidation(id:)` use it).")
    affiliate_id: strawberry.ID = strawberry.field(description="The number of the affiliate paid by this "
                                                               "row.")
    referred_user_id: strawberry.ID = strawberry.field(description="The number of the user who qualified.")
    cpa_level: int = strawberry.field(description="The user's level in the affiliate's network, 1..5: "
                                                  "the level whose CPA amount is paid.")
    cpa_amount: Decimal | None = strawberry.field(
        description="The affiliate's earning: null for another affiliate's token.")
    cpa_status: CpaStatus = strawberry.field(description="Where the row is in the payout workflow.")
    validation_date: datetime = strawberry.field(description="The qualifying instant t*.")
    user_deposits: Decimal = strawberry.field(description="The user's deposits at t*.")
    user_bets: Decimal = strawberry.field(description="The user's total stake at t*.")
    days_active: int = strawberry.field(description="The user's active days at t*.")
    validation_criteria: JSON = strawberry.field(description="The criteria in force at t*.")
    created_at: datetime = strawberry.field(description="When the ETL (or validateCpa) wrote the row, an "
                                                        "instant with offset.")
    owner_id: strawberry.Private[int]

    @strawberry.field(description="The affiliate paid by this row; null when the token may not see it.")
    async def affiliate(self, info: Info) -> Affiliate | None:
        return _affiliate_or_none(await affiliate_resolvers.affiliate_by_id(info.context, self.owner_id))

    @classmethod
    def from_row(cls, row: Any) -> CpaValidation:
        return cls(
            id=strawberry.ID(global_id("CpaValidation", row.id)),
            validation_id=strawberry.ID(str(row.id)),
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


@strawberry.input(description="Which affiliates a list keeps; every condition given must hold.")
class AffiliateFilter:
    status: AffiliateStatus | None = strawberry.field(
        default=None, description="Only affiliates in this status (null: any status).")
    search: str | None = strawberry.field(
        default=None, description="Case-insensitive text contained in the name or the email."
    )


@strawberry.input(description="How a list of affiliates is ordered; ties are broken by affiliate "
                              "number in the same direction.")
class AffiliateOrder:
    field: AffiliateOrderField = strawberry.field(
        default=AffiliateOrderField.TOTAL_CPA_EARNED,
        description="The figure to order by (affiliate tokens: ID only).")
    direction: OrderDirection = strawberry.field(
        default=OrderDirection.DESC, description="Ascending or descending (default: highest first).")


@strawberry.type
class AffiliateQueries:
    @strawberry.field(description="One affiliate; null when no affiliate has this id or the token may "
                                  "not see it (an affiliate token sees itself and its downline, levels "
                                  "1-5).")
    async def affiliate(
        self, info: Info,
        id: Annotated[strawberry.ID, strawberry.argument(
            description="The affiliate's number (`affiliateId`, e.g. \"300\") or its global `id`.")],
    ) -> Affiliate | None:
        return _affiliate_or_none(await affiliate_resolvers.affiliate(info.context, id))

    @strawberry.field(description="The token's affiliate; null for admin and analyst tokens.")
    async def me(self, info: Info) -> Affiliate | None:
        return _affiliate_or_none(await affiliate_resolvers.me(info.context))

    @strawberry.field(description="Every affiliate the token may see (an affiliate token: itself and its "
                                  "downline), filtered and ordered; by affiliate number when no order "
                                  "is given.")
    async def affiliates(
        self, info: Info, first: First = 20, after: After = None,
        filter: Annotated[AffiliateFilter | None, strawberry.argument(
            description="Conditions on status and text (null: every affiliate).")] = None,
        order_by: Annotated[AffiliateOrder | None, strawberry.argument(
            description="The order (null: by affiliate number, ascending).")] = None,
    ) -> Connection[Affiliate]:
        page = await affiliate_resolvers.affiliates_list(
            info.context, first=first, after=after,
            status=filter.status.value if filter is not None and filter.status is not None else None,
            search=filter.search if filter is not None else None,
            order_column=(order_by.field if order_by is not None else AffiliateOrderField.ID).value,
            descending=order_by is not None and order_by.direction is OrderDirection.DESC,
        )
        return connection_of(page, Affiliate.from_row)

    @strawberry.field(description="Active affiliates by their precomputed rank (1 first; ties share a rank "
                                  "and are listed by affiliate number). An affiliate token's ranking "
                                  "holds itself only, with its rank among all active affiliates.")
    async def ranking(
        self, info: Info,
        metric: Annotated[RankingMetric, strawberry.argument(
            description="The all-time total ranked by.")] = RankingMetric.CPA_EARNED,
        first: First = 20, after: After = None,
    ) -> Connection[Affiliate]:
        page = await affiliate_resolvers.ranking(info.context, metric=metric.value, first=first, after=after)
        return connection_of(page, Affiliate.from_row)


register("Affiliate", Affiliate.from_row)
register("Referral", Referral.from_row)
register("CpaValidation", CpaValidation.from_row)
