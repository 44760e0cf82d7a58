"""Commission plans (the Config service), their versions and inputs, the audit log, and the
what-if simulation of a proposed plan."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import strawberry
from strawberry.scalars import JSON


@strawberry.type(description="What a plan pays from effectiveFrom (a local date) until the next version.")
class CommissionPlanVersion:
    id: strawberry.ID
    plan_id: strawberry.ID
    effective_from: date
    cpa_by_level: list[Decimal] = strawberry.field(description="CPA amount for levels 1..5.")
    rev_share_by_level: list[Decimal] = strawberry.field(description="Share of GGR for levels 1..5 (0..1).")
    negative_carryover: bool
    min_payout: Decimal
    created_at: datetime


@strawberry.type(description="A commission plan; affiliates not assigned one are on the default plan.")
class CommissionPlan:
    id: strawberry.ID
    name: str
    is_default: bool
    created_at: datetime
    versions: list[CommissionPlanVersion] = strawberry.field(description="Oldest first.")
    current_version: CommissionPlanVersion | None = strawberry.field(
        description="The version in force today (business time zone).")


@strawberry.input(description="What a plan version pays. Exactly five levels each.")
class CommissionPlanTermsInput:
    cpa_by_level: list[Decimal]
    rev_share_by_level: list[Decimal]
    negative_carryover: bool = True
    min_payout: Decimal = Decimal("300.00")


@strawberry.type(description="The program's qualification criteria from effectiveFrom.")
class QualificationCriteria:
    id: strawberry.ID
    effective_from: date
    min_deposits: Decimal
    min_stake: Decimal
    min_active_days: int
    window_days: int | None
    created_at: datetime


@strawberry.input
class QualificationCriteriaInput:
    min_deposits: Decimal
    min_stake: Decimal
    min_active_days: int
    window_days: int | None = None


@strawberry.type(description="An affiliate's plan from a local date on.")
class CommissionPlanAssignment:
    affiliate_id: strawberry.ID
    plan_id: strawberry.ID
    effective_from: date


@strawberry.type(description="One admin change: who, when, what, and the state before and after.")
class AuditEntry:
    id: strawberry.ID
    at: datetime
    actor: str
    action: str
    entity: str
    entity_id: str | None
    before: JSON | None
    after: JSON | None


@strawberry.type
class CommissionAmounts:
    cpa: Decimal
    rev: Decimal
    total: Decimal


@strawberry.type(description="One affiliate's month: what it earned and what the proposed plan would pay.")
class SimulatedAffiliate:
    affiliate_id: strawberry.ID
    actual: CommissionAmounts
    simulated: CommissionAmounts
    difference: Decimal = strawberry.field(description="simulated.total - actual.total")


@strawberry.type
class CommissionSimulation:
    month: date
    affiliates: list[SimulatedAffiliate] = strawberry.field(
        description="Ordered by affiliate id; at most `first`, after the `after` id.")
    affiliate_count: int = strawberry.field(description="Affiliates with earnings in the month (all pages).")
    actual: CommissionAmounts = strawberry.field(description="Totals over every affiliate.")
    simulated: CommissionAmounts
    difference: Decimal
