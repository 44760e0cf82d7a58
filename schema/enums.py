"""Enums of the API; each value is the robust database's own spelling.

``described_enum`` gives every value its description (``strawberry.enum_value`` would do it
too, but it makes mypy type each member's ``.value`` as the definition instead of the string
the resolvers are given)."""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from typing import TypeVar

import strawberry
from strawberry.types.enum import StrawberryEnumDefinition

E = TypeVar("E", bound=type[Enum])


def described_enum(description: str, **values: str) -> Callable[[E], E]:
    """``@strawberry.enum`` with a description for the type and one for each value, by member
    name; a member without one (or a description of no member) fails at import."""

    def decorate(cls: E) -> E:
        names = {member.name for member in cls}
        if names != set(values):
            raise TypeError(f"{cls.__name__}: described {sorted(values)}, members {sorted(names)}")
        cls = strawberry.enum(cls, description=description)
        definition: StrawberryEnumDefinition = cls.__strawberry_definition__  # type: ignore[attr-defined]
        for value in definition.values:
            value.description = values[value.name]
        return cls

    return decorate


@described_enum(
    "An affiliate's status: the operator's user status (`cadastro.status`) as of the last ETL run.",
    ACTIVE="`ativo` in the operator's database. Only active affiliates are ranked.",
    INACTIVE="`inativo`, or a status the ETL does not know (kept, and recorded as an anomaly). "
             "Not ranked.",
    SUSPENDED="`suspenso`: the affiliate's own token is refused (ACCOUNT_SUSPENDED) once an ETL "
              "run has seen the suspension. Not ranked.",
)
class AffiliateStatus(Enum):
    ACTIVE = "active"
    INACTIVE = "inactive"
    SUSPENDED = "suspended"


@described_enum(
    "Whether a referred user has met the CPA qualification criteria (a user validates once, ever).",
    PENDING="The user has not met the criteria yet: `validationDate` is null.",
    VALIDATED="The user met the criteria at its qualifying instant t* (`validationDate`); the "
              "CPA validations written then stay, whatever happens later.",
)
class ReferralStatus(Enum):
    PENDING = "pending"
    VALIDATED = "validated"


@described_enum(
    "Where a CPA validation is in the payout workflow. Dashboard CPA figures count every "
    "validation whatever its status (what was earned); statements show what is paid.",
    PENDING="Written by the ETL at t*; not yet approved or paid in a statement.",
    APPROVED="The statement that pays it was approved (approveStatement).",
    PAID="The statement that pays it was marked paid (markStatementPaid).",
    REJECTED="Rejected by an admin from any other status (rejectCpaValidation, "
             "rejectUserCpaValidations); after payment, a chargeback taken back in a later statement.",
)
class CpaStatus(Enum):
    PENDING = "pending"
    APPROVED = "approved"
    PAID = "paid"
    REJECTED = "rejected"


@described_enum(
    "The kind of a money movement in an affiliate's network; amounts in BRL (reais).",
    DEPOSIT="An approved deposit of a user of the network: one row per source deposit and "
            "level, at the instant it was made.",
    WITHDRAWAL="An approved withdrawal of a user of the network: one row per source withdrawal "
               "and level, at the instant it was made.",
    BET="A user's total stake of one local day (business time zone): one row per user, day and "
        "level, dated at the local midnight that starts the day.",
    WIN="A user's total winnings of one local day (business time zone), on days with winnings: "
        "one row per user, day and level, dated at the local midnight that starts the day.",
    BONUS="Reserved: the operator's database has no bonus source yet, so no row has this type.",
    CPA="One CPA validation of the ledger: what the affiliate earned for the referred user "
        "(`userId`) at that level, dated at the qualifying instant t*.",
    REV="The affiliate's REV accrual of one level and local day: round(the level's REV share in "
        "force that day x the level's GGR of the day, 2), signed (negative when the players "
        "won), dated at the local midnight; `userId` is null. Only days with a non-zero accrual.",
)
class TransactionType(Enum):
    DEPOSIT = "deposit"
    WITHDRAWAL = "withdrawal"
    BET = "bet"
    WIN = "win"
    BONUS = "bonus"
    CPA = "cpa"
    REV = "rev"


@described_enum(
    "A period of the business time zone (FATURE_TIMEZONE, default America/Sao_Paulo), named by "
    "its first local day.",
    DAILY="One local calendar day.",
    WEEKLY="One ISO week, Monday to Sunday, in local days.",
    MONTHLY="One local calendar month, from its 1st.",
    YEARLY="One local calendar year, from January 1st.",
)
class PeriodType(Enum):
    DAILY = "daily"
    WEEKLY = "weekly"
    MONTHLY = "monthly"
    YEARLY = "yearly"


@described_enum(
    "Precomputed ranks among active affiliates, highest total first; ties share a rank "
    "(1, 1, 3), as of the last ETL run.",
    CPA_EARNED="`rankCpa`: by `totalCpaEarned`, the CPA earned over the whole network (levels "
               "1-5, all time, every validation whatever its status).",
    VALIDATED_REFERRALS="`rankReferrals`: by `totalValidatedReferrals`, the affiliate's level-1 "
                        "CPA validations (all time).",
)
class RankingMetric(Enum):
    CPA_EARNED = "rank_cpa"
    VALIDATED_REFERRALS = "rank_referrals"


@described_enum(
    "What affiliates can be ordered by; ties are broken by id in the same direction. Affiliate "
    "tokens may order by ID only.",
    ID="The affiliate's id (the operator's user id).",
    TOTAL_REFERRALS="`totalReferrals`: direct (level-1) referrals.",
    TOTAL_VALIDATED_REFERRALS="`totalValidatedReferrals`: level-1 CPA validations.",
    TOTAL_DEPOSITS="`totalDeposits`: approved deposits of the whole network (levels 1-5), BRL.",
    TOTAL_WITHDRAWALS="`totalWithdrawals`: approved withdrawals of the whole network (levels "
                      "1-5), BRL.",
    TOTAL_BETS="`totalBets`: stakes of the whole network (levels 1-5), BRL.",
    TOTAL_GGR="`totalGgr`: GGR (stakes minus wins) of the whole network (levels 1-5), BRL.",
    TOTAL_CPA_EARNED="`totalCpaEarned`: CPA earned over the whole network (levels 1-5), BRL.",
    TOTAL_REV_EARNED="`totalRevEarned`: REV earned over the whole network (levels 1-5), BRL.",
    TOTAL_NETWORK_SIZE="`totalNetworkSize`: users of the five levels.",
)
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


@described_enum(
    "The direction of an order.",
    ASC="Smallest value first.",
    DESC="Largest value first.",
)
class OrderDirection(Enum):
    ASC = "asc"
    DESC = "desc"
