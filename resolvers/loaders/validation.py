"""CPA validations (the ledger): pages and counts per affiliate, newest first, and by id."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Row

from resolvers.loaders.base import BatchLoader, CountLoader, PageArgs, PageLoader, sql

VALIDATION_COLUMNS = (
    "id, affiliate_id, referred_user_id, validation_date, validation_criteria, user_deposits, "
    "user_bets, days_active, cpa_level, cpa_amount, cpa_status, created_at"
)

_BY_ID = sql(f"SELECT {VALIDATION_COLUMNS} FROM affiliate_cpa_validations WHERE id = ANY(:ids)")


@dataclass(frozen=True)
class ValidationArgs(PageArgs):
    level: int | None = None

    def conditions(self) -> tuple[list[str], dict[str, Any]]:
        if self.level is None:
            return [], {}
        return ["cpa_level = :level"], {"level": self.level}


class CpaValidationPageByAffiliateLoader(PageLoader[ValidationArgs]):
    table = "affiliate_cpa_validations"
    owner_column = "affiliate_id"
    columns = VALIDATION_COLUMNS
    # Backward scan of the index (affiliate_id, validation_date, id).
    order_by = "validation_date DESC, id DESC"
    keyset = "(validation_date, id) < (:after_0, :after_1)"
    level_column = "cpa_level"
    mask = "validation_row"


class CpaValidationCountByAffiliateLoader(CountLoader[ValidationArgs]):
    table = "affiliate_cpa_validations"
    owner_column = "affiliate_id"
    level_column = "cpa_level"


class CpaValidationByIdLoader(BatchLoader[int, Row | None]):
    async def load_batch(self, keys: list[int]) -> Sequence[Row | None]:
        rows = await self.access.database.fetch(_BY_ID, {"ids": keys})
        found = {r.id: self.access.validation_row(r) for r in await self.access.visible_rows(rows)}
        return [found.get(k) for k in keys]
