"""Enums of the API; each value is the robust database's own spelling."""

from __future__ import annotations

from enum import Enum

import strawberry


@strawberry.enum(description="An affiliate's status, from the operator's user status.")
class AffiliateStatus(Enum):
    ACTIVE = "active"
    INACTIVE = "inactive"
    SUSPENDED = "suspended"


@strawberry.enum(description="pending until the referred user meets the CPA criteria, then validated.")
class ReferralStatus(Enum):
    PENDING = "pending"
    VALIDATED = "validated"


@strawberry.enum(description="Where a CPA validation is in the payout workflow.")
class CpaStatus(Enum):
    PENDING = "pending"
    APPROVED = "approved"
    PAID = "paid"
    REJECTED = "rejected"


@strawberry.enum
class TransactionType(Enum):
    DEPOSIT = "deposit"
    WITHDRAWAL = "withdrawal"
    BET = "bet"
    WIN = "win"
    BONUS = "bonus"
    CPA = "cpa"
    REV = "rev"


@strawberry.enum(description="Periods are local (business time zone); weeks start on Monday.")
class PeriodType(Enum):
    DAILY = "daily"
    WEEKLY = "weekly"
    MONTHLY = "monthly"
    YEARLY = "yearly"


@strawberry.enum(description="Precomputed ranks among active affiliates (ties share a rank).")
class RankingMetric(Enum):
    CPA_EARNED = "rank_cpa"
    VALIDATED_REFERRALS = "rank_referrals"


@strawberry.enum(description="What affiliates can be ordered by.")
class AffiliateOrderField(Enum):
    ID = "affiliate_id"
    TOTAL_REFERRALS = "total_referrals"
    TOTAL_VALIDATED_REFERRALS = "total_validated_referrals"
    TOTAL_DEPOSITS = "total_deposits"
    TOTAL_WITHDRAWALS = "total_withdrawals"
    TOTAL_BETS = "total_bets"
    TOTAL_GGR = "total_ggr"
    TOTAL_CPA_EARNED = "total_cpa_earned"
    TOTAL_REV_EARNED = "total_rev_earned"
    TOTAL_NETWORK_SIZE = "total_network_size"


@strawberry.enum
class OrderDirection(Enum):
    ASC = "asc"
    DESC = "desc"
