"""The Query and Mutation roots, the Schema object with its extensions, and the SDL export."""

from __future__ import annotations

from pathlib import Path

import strawberry
from graphql import GraphQLError
from strawberry.printer import print_schema
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext

from resolvers import affiliate as affiliate_resolvers
from resolvers import commission as commission_resolvers
from resolvers import statement as statement_resolvers
from resolvers import sync as sync_resolvers
from resolvers import validation as validation_resolvers
from schema.affiliate import Affiliate
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
from schema.pagination import Connection
from schema.scalars import SCALAR_OVERRIDES
from schema.statement import CloseMonthResult, Statement
from schema.sync import SyncStatus
from schema.validation import CpaValidation, ValidateCpaResult

SDL_PATH = Path(__file__).resolve().parents[1] / "schema.graphql"


@strawberry.type
class AffiliateQueries:
    affiliate: Affiliate | None = strawberry.field(
        resolver=affiliate_resolvers.affiliate,
        description="Null when no affiliate has this id or the token may not see it.",
    )
    me: Affiliate | None = strawberry.field(
        resolver=affiliate_resolvers.me,
        description="The token's affiliate; null for admin and analyst tokens.",
    )
    affiliates: Connection[Affiliate] = strawberry.field(resolver=affiliate_resolvers.affiliates_list)
    ranking: Connection[Affiliate] = strawberry.field(resolver=affiliate_resolvers.ranking)


@strawberry.type
class SyncQueries:
    sync_status: SyncStatus = strawberry.field(resolver=sync_resolvers.sync_status)


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
class ValidationMutations:
    validate_cpa: ValidateCpaResult = strawberry.field(
        resolver=validation_resolvers.validate_cpa,
        description="Run the CPA validation step now for this affiliate's network "
                    "(same code, ledger rules and lock as the ETL); returns the new validations.",
    )


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
