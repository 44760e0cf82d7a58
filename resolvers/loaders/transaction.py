"""Financial transactions of an affiliate's network: pages and counts, newest first."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from resolvers.loaders.base import CountLoader, PageArgs, PageLoader

# The affiliate's own earnings among its network's movements (never shown to another affiliate).
OWNER_ONLY = "transaction_type IN ('cpa', 'rev')"


@dataclass(frozen=True)
class TransactionArgs(PageArgs):
    type: str | None = None
    level: int | None = None
    start: datetime | None = None  # inclusive
    end: datetime | None = None  # exclusive

    def conditions(self) -> tuple[list[str], dict[str, Any]]:
        conditions, params = [], {}
        for name, clause in (
            ("type", "transaction_type = :type"),
            ("level", "mlm_level = :level"),
            ("start", "transaction_date >= :start"),
            ("end", "transaction_date < :end"),
        ):
            value = getattr(self, name)
            if value is not None:
                conditions.append(clause)
                params[name] = value
        return conditions, params


class TransactionPageByAffiliateLoader(PageLoader[TransactionArgs]):
    table = "affiliate_financial_transactions"
    owner_column = "affiliate_id"
    columns = (
        "id, affiliate_id, user_id, mlm_level, transaction_type, amount, transaction_date, "
        "source_id"
    )
    # Backward scan of the per-partition index (affiliate_id, transaction_date, id).
    order_by = "transaction_date DESC, id DESC"
    keyset = "(transaction_date, id) < (:after_0, :after_1)"
    level_column = "mlm_level"
    owner_only = OWNER_ONLY


class TransactionCountByAffiliateLoader(CountLoader[TransactionArgs]):
    table = "affiliate_financial_transactions"
    owner_column = "affiliate_id"
    level_column = "mlm_level"
    owner_only = OWNER_ONLY
