"""The Query and Mutation roots, the Schema object with its extensions, and the SDL export."""

from __future__ import annotations

from pathlib import Path

import strawberry
from graphql import GraphQLError
from strawberry.printer import print_schema
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext

from resolvers import commission as commission_resolvers
from resolvers import statement as statement_resolvers
from schema.affiliate import AffiliateQueries, CpaValidation
from schema.commission import (
    AuditEntry,
    CommissionPlan,
    CommissionPlanAssignment,
    CommissionPlanVersion,
    CommissionSimulation,
    QualificationCriteria,
)
from schema.errors import ErrorPolicy, log_unexpected
from schema.execution import FatureExecutionContext
from schema.limits import RequestLimits
from schema.scalars import SCALAR_OVERRIDES
from schema.statement import CloseMonthResult, Statement
from schema.sync import SyncQueries
from schema.validation import ValidationMutations

SDL_PATH = Path(__file__).resolve().parents[1] / "schema.graphql"


@strawberry.type
class CommissionQueries:
    commission_plans: list[CommissionPlan] = strawberry.field(resolver=commission_resolvers.commission_plans)
    commission_plan: CommissionPlan | None = strawberry.field(resolver=commission_resolvers.commission_plan)
    qualification_criteria: list[QualificationCriteria] = strawberry.field(
        resolver=commission_resolvers.qualification_criteria)
    commission_audit_log: list[AuditEntry] = strawberry.field(resolver=commission_resolvers.audit_log)
    simulate_commission_plan: CommissionSimulation = strawberry.field(
        resolver=commission_resolvers.simulate_commission_plan)


@strawberry.type
class StatementQueries:
    statement: Statement | None = strawberry.field(resolver=statement_resolvers.statement)
    statements: list[Statement] = strawberry.field(resolver=statement_resolvers.statements)


@strawberry.type
class CommissionMutations:
    create_commission_plan: CommissionPlan = strawberry.field(
        resolver=commission_resolvers.create_commission_plan)
    schedule_commission_plan_version: CommissionPlanVersion = strawberry.field(
        resolver=commission_resolvers.schedule_commission_plan_version)
    assign_commission_plan: CommissionPlanAssignment = strawberry.field(
        resolver=commission_resolvers.assign_commission_plan)
    schedule_qualification_criteria: QualificationCriteria = strawberry.field(
        resolver=commission_resolvers.schedule_qualification_criteria)


@strawberry.type
class StatementMutations:
    close_month: CloseMonthResult = strawberry.field(resolver=statement_resolvers.close_month)
    approve_statement: Statement = strawberry.field(resolver=statement_resolvers.approve_statement)
    mark_statement_paid: Statement = strawberry.field(resolver=statement_resolvers.mark_statement_paid)
    reject_cpa_validation: CpaValidation = strawberry.field(
        resolver=statement_resolvers.reject_cpa_validation)


# Each domain declares its root fields; the roots put them together.
@strawberry.type
class Query(AffiliateQueries, SyncQueries, CommissionQueries, StatementQueries):
    pass


@strawberry.type
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
