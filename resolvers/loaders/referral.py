"""Pages and counts of an affiliate's referrals (``affiliate_referrals``), newest first."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from resolvers.loaders.base import CountLoader, PageArgs, PageLoader


@dataclass(frozen=True)
class ReferralArgs(PageArgs):
    level: int | None = None
    status: str | None = None

    def conditions(self) -> tuple[list[str], dict[str, Any]]:
        conditions: list[str] = []
        params: dict[str, object] = {}
        if self.level is not None:
            conditions.append("mlm_level = :level")
            params["level"] = self.level
        if self.status is not None:
            conditions.append("status = :status")
            params["status"] = self.status
        return conditions, params


class ReferralPageByAffiliateLoader(PageLoader[ReferralArgs]):
    table = "affiliate_referrals"
    owner_column = "referrer_id"
    columns = (
        "referrer_id, referred_id, mlm_level, referral_date, status, validation_date, "
        "total_deposits, total_bets, cpa_amount"
    )
    # Matches the index (referrer_id, referral_date DESC, referred_id).
    order_by = "referral_date DESC, referred_id"
    keyset = "referral_date <= :after_0 AND (referral_date < :after_0 OR referred_id > :after_1)"
    level_column = "mlm_level"
    mask = "referral_row"


class ReferralCountByAffiliateLoader(CountLoader[ReferralArgs]):
    table = "affiliate_referrals"
    owner_column = "referrer_id"
    level_column = "mlm_level"
