"""The Query and Mutation roots, the Schema object with its extensions, and the SDL export."""

from __future__ import annotations

from pathlib import Path

import strawberry
from graphql import GraphQLError
from strawberry.printer import print_schema
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext

from schema.affiliate import AffiliateQueries
from schema.commission import CommissionMutations, CommissionQueries
from schema.errors import ErrorPolicy, log_unexpected
from schema.execution import FatureExecutionContext
from schema.limits import RequestLimits
from schema.node import NodeQueries
from schema.scalars import SCALAR_OVERRIDES
from schema.statement import StatementMutations, StatementQueries
from schema.subscription import Subscription
from schema.sync import SyncQueries
from schema.validation import ValidationMutations

SDL_PATH = Path(__file__).resolve().parents[1] / "schema.graphql"


# Each domain declares its root fields; the roots put them together.
@strawberry.type(description="Reads: affiliates and their networks, commissions, statements, the data's "
                             "freshness, and any Node by its global id.")
class Query(NodeQueries, AffiliateQueries, SyncQueries, CommissionQueries, StatementQueries):
    pass


@strawberry.type(description="Changes: commission plans and criteria, the month close and the payout "
                             "workflow, CPA validation on demand. Admin tokens only; the commission "
                             "changes are audited.")
class Mutation(ValidationMutations, CommissionMutations, StatementMutations):
    pass


class FatureSchema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        # Client mistakes and outages are answered, not logged as crashes.
        log_unexpected(errors)


schema = FatureSchema(
    query=Query,
    mutation=Mutation,
    subscription=Subscription,
    extensions=[RequestLimits, ErrorPolicy],  # RequestLimits also caches parsing and validation
    scalar_overrides=SCALAR_OVERRIDES,
    execution_context_class=FatureExecutionContext,
    # The view caps batches at FATURE_MAX_BATCH_OPERATIONS; this is the hard ceiling.
    config=StrawberryConfig(batching_config={"max_operations": 100}),
)


def sdl() -> str:
    """The schema as SDL, exactly as ``schema.graphql`` holds it."""
    return print_schema(schema) + "\n"


def export_sdl(path: Path = SDL_PATH) -> Path:
    path.write_text(sdl(), encoding="utf-8")
    return path


if __name__ == "__main__":
    print(export_sdl())
