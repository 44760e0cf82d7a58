"""Money movements of an affiliate's network (``affiliate_financial_transactions``)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import strawberry
from sqlalchemy.engine import Row

from resolvers.global_ids import global_id, transaction_key
from schema.enums import TransactionType
from schema.node import Node, register


@strawberry.type(description="Bets and wins are one row per user, local day and type.")
class Transaction(Node):
    transaction_id: strawberry.ID = strawberry.field(
        description="The row's number: unique today, but a full ETL run renumbers rows, so keep `id` "
                    "instead; the same number as REST and the exports show.")
    user_id: strawberry.ID | None = strawberry.field(
        description="The number of the network user it belongs to; null on the affiliate's own REV rows.")
    level: int = strawberry.field(description="The user's level in the affiliate's network, 1..5 (the level "
                                              "paid, on CPA and REV rows).")
    type: TransactionType = strawberry.field(description="What moved: a deposit, withdrawal, bet, win, "
                                                         "bonus, or the affiliate's CPA or REV.")
    amount: Decimal = strawberry.field(description="In reais: a deposit, withdrawal, stake or win as the "
                                                   "source has it; CPA and REV as earned (REV is signed).")
    transaction_date: datetime = strawberry.field(
        description="When it happened, an instant with offset; bets, wins (one row per user and local "
                    "day) and REV (one row per level and local day): the start of that day.")

    @classmethod
    def from_row(cls, row: Row) -> Transaction:
        return cls(
            id=strawberry.ID(global_id("Transaction", *transaction_key(row))),
            transaction_id=strawberry.ID(str(row.id)),
            user_id=strawberry.ID(str(row.user_id)) if row.user_id is not None else None,
            level=row.mlm_level,
            type=TransactionType(row.transaction_type),
            amount=row.amount,
            transaction_date=row.transaction_date,
        )


register("Transaction", Transaction.from_row)
