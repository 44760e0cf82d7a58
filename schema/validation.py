"""Validating CPA on demand (``Mutation.validateCpa``); the ledger row type ``CpaValidation``
is part of the affiliate graph (``schema/affiliate.py``)."""

from __future__ import annotations

from typing import Annotated

import strawberry
from strawberry.types import Info

from resolvers import validation as validation_resolvers
from resolvers.global_ids import parse_entity_id
from schema.affiliate import CpaValidation
from schema.permissions import AdminOnly


@strawberry.type(description="What validateCpa did for an affiliate's network.")
class ValidateCpaResult:
    affiliate_id: strawberry.ID = strawberry.field(description="The number of the affiliate whose network "
                                                               "was validated.")
    validations: list[CpaValidation] = strawberry.field(
        description="The validations this run wrote (empty when nobody new qualified)."
    )


@strawberry.type
class ValidationMutations:
    @strawberry.field(
        description="Run the CPA validation step now for this affiliate's network "
                    "(same code, ledger rules and lock as the ETL); returns the new validations.",
        permission_classes=[AdminOnly],
    )
    async def validate_cpa(
        self, info: Info,
        affiliate_id: Annotated[strawberry.ID, strawberry.argument(
            description="The affiliate's number (affiliateId) or its global `id`.")],
    ) -> ValidateCpaResult:
        owner = parse_entity_id(affiliate_id, "Affiliate", "affiliateId")
        rows = await validation_resolvers.validate_cpa(info.context, owner)
        return ValidateCpaResult(affiliate_id=strawberry.ID(str(owner)),
                                 validations=[CpaValidation.from_row(r) for r in rows])
