"""Commission plans (the Config service), their versions and inputs, the audit log, the
what-if simulation of a proposed plan, and their root fields with who may use them."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from commissions import service
from resolvers import commission as resolvers
from resolvers.global_ids import global_id
from schema.node import Node, register
from schema.pagination import Connection, connection_of
from schema.permissions import AdminOnly, StaffOnly


class MayListPlans(StaffOnly):
    message = "Only admin and analyst tokens may list commission plans"


class MaySimulatePlans(StaffOnly):
    message = "Only admin and analyst tokens may simulate plans"


@strawberry.type(description="What a plan pays from effectiveFrom (a local date) until the next version.")
class CommissionPlanVersion(Node):
    plan_version_id: strawberry.ID = strawberry.field(
        description="The version's number (Statement.planVersionId names it).")
    plan_id: strawberry.ID = strawberry.field(description="The number of the plan this version belongs "
                                                          "to.")
    effective_from: date = strawberry.field(description="The local date from which it is in force (until "
                                                        "the next version's).")
    cpa_by_level: list[Decimal] = strawberry.field(description="CPA amount in reais for levels 1..5, "
                                                               "level 1 first.")
    rev_share_by_level: list[Decimal] = strawberry.field(
        description="Share of the network's daily GGR paid as REV for levels 1..5 (0..1), level 1 first.")
    negative_carryover: bool = strawberry.field(
        description="Whether a month's negative REV balance is carried to the next month (true) or "
                    "dropped (false).")
    min_payout: Decimal = strawberry.field(description="The smallest payable paid, in reais; a smaller "
                                                       "one is held and rolled into the next month.")
    created_at: datetime = strawberry.field(description="When the version was scheduled.")

    @classmethod
    def from_record(cls, v: service.PlanVersion) -> CommissionPlanVersion:
        return cls(
            id=strawberry.ID(global_id("CommissionPlanVersion", v.id)),
            plan_version_id=strawberry.ID(str(v.id)), plan_id=strawberry.ID(str(v.plan_id)),
            effective_from=v.effective_from, cpa_by_level=v.cpa_by_level,
            rev_share_by_level=v.rev_share_by_level,
            negative_carryover=v.negative_carryover, min_payout=v.min_payout, created_at=v.created_at,
        )


@strawberry.type(description="A commission plan; affiliates not assigned one are on the default plan.")
class CommissionPlan(Node):
    plan_id: strawberry.ID = strawberry.field(
        description="The plan's number (`commissionPlan(id:)`, `assignCommissionPlan(planId:)` and "
                    "Statement.planId use it).")
    name: str = strawberry.field(description="The plan's name, unique among plans.")
    is_default: bool = strawberry.field(description="True for the plan of every affiliate not assigned "
                                                    "another one.")
    created_at: datetime = strawberry.field(description="When the plan was created.")
    versions: list[CommissionPlanVersion] = strawberry.field(
        description="Every version of the plan, oldest first (scheduled ones included).")
    current_version: CommissionPlanVersion | None = strawberry.field(
        description="The version in force today (business time zone).")

    @classmethod
    def from_record(cls, plan: service.Plan) -> CommissionPlan:
        current = plan.current_version
        return cls(
            id=strawberry.ID(global_id("CommissionPlan", plan.id)), plan_id=strawberry.ID(str(plan.id)),
            name=plan.name, is_default=plan.is_default,
            created_at=plan.created_at,
            versions=[CommissionPlanVersion.from_record(v) for v in plan.versions],
            current_version=CommissionPlanVersion.from_record(current) if current is not None else None,
        )


@strawberry.input(description="What a plan version pays. Exactly five levels each.")
class CommissionPlanTermsInput:
    cpa_by_level: list[Decimal] = strawberry.field(
        description="CPA amount in reais for levels 1..5, level 1 first (each >= 0).")
    rev_share_by_level: list[Decimal] = strawberry.field(
        description="Share of the network's daily GGR paid as REV for levels 1..5, level 1 first "
                    "(each 0..1).")
    negative_carryover: bool = strawberry.field(
        default=True, description="Carry a month's negative REV balance to the next month (default) or "
                                  "drop it.")
    min_payout: Decimal = strawberry.field(
        default=Decimal("300.00"), description="The smallest payable paid, in reais (default 300.00); "
                                               "a smaller one is held.")

    def to_terms(self) -> service.PlanTerms:
        return service.PlanTerms(self.cpa_by_level, self.rev_share_by_level, self.negative_carryover,
                                 self.min_payout)


@strawberry.type(description="The program's qualification criteria from effectiveFrom.")
class QualificationCriteria(Node):
    criteria_id: strawberry.ID = strawberry.field(description="The criteria version's number.")
    effective_from: date = strawberry.field(
        description="The local date from which this version judges deposit and bet instants (until the "
                    "next version's).")
    min_deposits: Decimal = strawberry.field(description="The user's approved deposits needed, in reais "
                                                         "(at least).")
    min_stake: Decimal = strawberry.field(description="The user's total stake needed, in reais (at "
                                                      "least).")
    min_active_days: int = strawberry.field(description="The user's active days needed (local days with "
                                                        "a bet, at least).")
    window_days: int | None = strawberry.field(
        description="Only activity within N x 24 hours of the referral counts under this version; null: "
                    "no window.")
    created_at: datetime = strawberry.field(description="When the version was scheduled.")

    @classmethod
    def from_row(cls, r: Any) -> QualificationCriteria:
        """A row of qualification_criteria_versions."""
        return cls(
            id=strawberry.ID(global_id("QualificationCriteria", r["id"])),
            criteria_id=strawberry.ID(str(r["id"])), effective_from=r["effective_from"],
            min_deposits=r["min_deposits"], min_stake=r["min_stake"], min_active_days=r["min_active_days"],
            window_days=r["window_days"],
            created_at=r["created_at"],
        )


@strawberry.input(description="What a user must reach to qualify for CPA under a criteria version.")
class QualificationCriteriaInput:
    min_deposits: Decimal = strawberry.field(description="Approved deposits needed, in reais (>= 0).")
    min_stake: Decimal = strawberry.field(description="Total stake needed, in reais (>= 0).")
    min_active_days: int = strawberry.field(description="Active days needed (local days with a bet, "
                                                        ">= 0).")
    window_days: int | None = strawberry.field(
        default=None, description="Count only activity within N x 24 hours of the referral (N >= 1); "
                                  "null: no window.")

    def to_terms(self) -> service.QualificationTerms:
        return service.QualificationTerms(self.min_deposits, self.min_stake, self.min_active_days,
                                          self.window_days)


@strawberry.type(description="An affiliate's plan from a local date on.")
class CommissionPlanAssignment:
    affiliate_id: strawberry.ID = strawberry.field(description="The number of the affiliate assigned.")
    plan_id: strawberry.ID = strawberry.field(description="The number of the plan it is on from "
                                                          "effectiveFrom.")
    effective_from: date = strawberry.field(description="The local date from which the affiliate is on "
                                                        "the plan.")

    @classmethod
    def from_record(cls, a: service.Assignment) -> CommissionPlanAssignment:
        return cls(affiliate_id=strawberry.ID(str(a.affiliate_id)), plan_id=strawberry.ID(str(a.plan_id)),
                   effective_from=a.effective_from)


@strawberry.type(description="One admin change: who, when, what, and the state before and after.")
class AuditEntry(Node):
    audit_entry_id: strawberry.ID = strawberry.field(description="The entry's number in the audit log "
                                                                 "(entries are numbered in order).")
    at: datetime = strawberry.field(description="When the change was made, an instant with offset.")
    actor: str = strawberry.field(description="Who made it: the token's role and subject "
                                              "('admin:<subject>').")
    action: str = strawberry.field(description="The mutation that made it (createCommissionPlan, "
                                               "approveStatement, ...).")
    entity: str = strawberry.field(description="The kind of thing changed (commission_plan, "
                                               "cpa_validation, ...).")
    entity_id: str | None = strawberry.field(description="The changed thing's number, as text; null when "
                                                         "the change has none.")
    before: JSON | None = strawberry.field(description="Its state before the change; null when it did not "
                                                       "exist.")
    after: JSON | None = strawberry.field(description="Its state after the change; null when it was "
                                                      "removed.")

    @classmethod
    def from_record(cls, e: service.LogEntry) -> AuditEntry:
        return cls(id=strawberry.ID(global_id("AuditEntry", e.id)), audit_entry_id=strawberry.ID(str(e.id)),
                   at=e.at, actor=e.actor, action=e.action, entity=e.entity,
                   entity_id=e.entity_id, before=e.before, after=e.after)


@strawberry.type(description="CPA and REV of a month, in reais.")
class CommissionAmounts:
    cpa: Decimal = strawberry.field(description="CPA of the month's validations, in reais.")
    rev: Decimal = strawberry.field(description="REV of the month's days (signed), in reais.")
    total: Decimal = strawberry.field(description="cpa + rev, in reais.")

    @classmethod
    def from_record(cls, amounts: service.Amounts) -> CommissionAmounts:
        return cls(cpa=amounts.cpa, rev=amounts.rev, total=amounts.total)


@strawberry.type(description="One affiliate's month: what it earned and what the proposed plan would pay.")
class SimulatedAffiliate:
    affiliate_id: strawberry.ID = strawberry.field(description="The affiliate's number.")
    actual: CommissionAmounts = strawberry.field(description="What it earned in the month under its "
                                                             "plans.")
    simulated: CommissionAmounts = strawberry.field(description="What the proposed terms would pay it for "
                                                                "the same month.")
    difference: Decimal = strawberry.field(description="simulated.total - actual.total, in reais.")

    @classmethod
    def from_record(cls, c: service.Comparison) -> SimulatedAffiliate:
        return cls(
            affiliate_id=strawberry.ID(str(c.affiliate_id)), actual=CommissionAmounts.from_record(c.actual),
            simulated=CommissionAmounts.from_record(c.simulated), difference=c.difference,
        )


@strawberry.type(description="A proposed plan's terms applied to a month's data, against what was "
                             "earned: per affiliate and in total.")
class CommissionSimulation:
    month: date = strawberry.field(description="The local month simulated, named by its first day.")
    affiliates: list[SimulatedAffiliate] = strawberry.field(
        description="Ordered by affiliate id; at most `first`, after the `after` id.",
        deprecation_reason="Use affiliatesConnection: the same rows as a connection (opaque cursors, "
                           "pageInfo, totalCount).")
    affiliate_count: int = strawberry.field(description="Affiliates with earnings in the month (all pages).")
    actual: CommissionAmounts = strawberry.field(description="Totals over every affiliate.")
    simulated: CommissionAmounts = strawberry.field(description="What the proposed terms would pay, over "
                                                                "every affiliate.")
    difference: Decimal = strawberry.field(description="simulated.total - actual.total over every "
                                                       "affiliate, in reais.")

    found: strawberry.Private[service.Simulation]  # read with first + 1 affiliates
    terms: strawberry.Private[service.PlanTerms]
    page: strawberry.Private[tuple[int, int]]  # the root's (first, after id)

    @strawberry.field(description="The affiliates with earnings in the month, ordered by affiliate "
                                  "id; totalCount is affiliateCount.")
    async def affiliates_connection(
        self, info: Info,
        first: Annotated[int | None, strawberry.argument(description="Page size, 0..1000.")] = 100,
        after: Annotated[str | None, strawberry.argument(
            description="A cursor this connection returned.")] = None,
    ) -> Connection[SimulatedAffiliate]:
        size, after_id = resolvers.simulation_page_args(first, after)
        found = self.found
        if (size, after_id) != self.page:  # another page than the root's: simulated again
            found = await resolvers.simulation(info.context, self.terms, self.month, size, after_id)
        return connection_of(resolvers.simulation_page(found, size, after), SimulatedAffiliate.from_record)

    @classmethod
    def from_record(
        cls, s: service.Simulation, terms: service.PlanTerms, first: int, after_id: int
    ) -> CommissionSimulation:
        return cls(
            month=s.month, affiliates=[SimulatedAffiliate.from_record(a) for a in s.affiliates[:first]],
            affiliate_count=s.affiliate_count, actual=CommissionAmounts.from_record(s.actual),
            simulated=CommissionAmounts.from_record(s.simulated), difference=s.difference,
            found=s, terms=terms, page=(first, after_id),
        )


PlanId = Annotated[strawberry.ID, strawberry.argument(
    description="The plan's number (planId) or its global `id`.")]
AffiliateId = Annotated[strawberry.ID, strawberry.argument(
    description="The affiliate's number (affiliateId) or its global `id`.")]
EffectiveFrom = Annotated[date, strawberry.argument(
    description="The local date it takes effect: tomorrow or later (business time zone).")]
Terms = Annotated[CommissionPlanTermsInput, strawberry.argument(
    description="What the plan pays: CPA and REV share by level, carryover rule, minimum payout.")]
Entity = Annotated[str | None, strawberry.argument(
    description="Only entries about this kind of thing (commission_plan, cpa_validation, ...); null: all.")]
EntityId = Annotated[str | None, strawberry.argument(
    description="Only entries about the thing with this number, as text; null: all.")]


@strawberry.type
class CommissionQueries:
    @strawberry.field(permission_classes=[MayListPlans],
                      description="Every commission plan with its versions, by plan number. Admin and "
                                  "analyst tokens only.")
    async def commission_plans(self, info: Info) -> list[CommissionPlan]:
        return [CommissionPlan.from_record(p) for p in await resolvers.commission_plans(info.context)]

    @strawberry.field(description="One plan with its versions; null when there is none or the token may "
                                  "not see it (an affiliate token: the plan it is on today only).")
    async def commission_plan(self, info: Info, id: PlanId) -> CommissionPlan | None:
        plan = await resolvers.commission_plan(info.context, id)
        return CommissionPlan.from_record(plan) if plan is not None else None

    @strawberry.field(description="Every version of the program's CPA qualification criteria, oldest "
                                  "first (scheduled ones included).")
    async def qualification_criteria(self, info: Info) -> list[QualificationCriteria]:
        rows = await resolvers.qualification_criteria(info.context)
        return [QualificationCriteria.from_row(r) for r in rows]

    @strawberry.field(permission_classes=[AdminOnly],
                      description="The audit log of admin changes as a plain list, newest first. Admin "
                                  "tokens only.",
                      deprecation_reason="Use commissionAuditLogConnection: the same entries as a "
                                         "connection (opaque cursors, pageInfo, totalCount).")
    async def commission_audit_log(
        self, info: Info, entity: Entity = None, entity_id: EntityId = None,
        first: Annotated[int, strawberry.argument(description="Page size, 0..500.")] = 50,
        before: Annotated[strawberry.ID | None, strawberry.argument(
            description="An entry number: the page starts below it (null: the newest).")] = None,
    ) -> list[AuditEntry]:
        found = await resolvers.audit_log(info.context, entity, entity_id, first, before)
        return [AuditEntry.from_record(e) for e in found]

    @strawberry.field(permission_classes=[AdminOnly],
                      description="The audit log of admin changes, newest first. Admin tokens only.")
    async def commission_audit_log_connection(
        self, info: Info, entity: Entity = None, entity_id: EntityId = None,
        first: Annotated[int, strawberry.argument(description="Page size, 0..500.")] = 50,
        after: Annotated[str | None, strawberry.argument(
            description="A cursor this connection returned.")] = None,
    ) -> Connection[AuditEntry]:
        page = await resolvers.audit_log_page(info.context, entity, entity_id, first, after)
        return connection_of(page, AuditEntry.from_record)

    @strawberry.field(permission_classes=[MaySimulatePlans],
                      description="What the proposed terms would have paid for a month's data (CPA of its "
                                  "validations, REV of its days) against what was earned. Admin and "
                                  "analyst tokens only.")
    async def simulate_commission_plan(
        self, info: Info,
        terms: Annotated[CommissionPlanTermsInput, strawberry.argument(description="The proposed terms.")],
        month: Annotated[date, strawberry.argument(
            description="The local month simulated, named by its first day (2025-03-01).")],
        first: Annotated[int, strawberry.argument(
            description="Page size of the deprecated `affiliates` list, 0..1000.")] = 100,
        after: Annotated[strawberry.ID | None, strawberry.argument(
            description="An affiliate number: the deprecated `affiliates` list starts after it.")] = None,
    ) -> CommissionSimulation:
        plan_terms = terms.to_terms()
        found = await resolvers.simulate_commission_plan(info.context, plan_terms, month, first, after)
        after_id = int(after) if after is not None else 0  # checked by the resolver
        return CommissionSimulation.from_record(found, plan_terms, first, after_id)


@strawberry.type
class CommissionMutations:
    @strawberry.field(permission_classes=[AdminOnly],
                      description="A new plan; its first version covers all dates. Admins only; audited.")
    async def create_commission_plan(
        self, info: Info,
        name: Annotated[str, strawberry.argument(description="The plan's name, unique among plans.")],
        terms: Terms,
    ) -> CommissionPlan:
        plan = await resolvers.create_commission_plan(info.context, name, terms.to_terms())
        return CommissionPlan.from_record(plan)

    @strawberry.field(permission_classes=[AdminOnly],
                      description="A new version of a plan from a local date, tomorrow or later (a "
                                  "version scheduled for that date is replaced). Admins only; audited.")
    async def schedule_commission_plan_version(
        self, info: Info, plan_id: PlanId, effective_from: EffectiveFrom, terms: Terms,
    ) -> CommissionPlanVersion:
        version = await resolvers.schedule_commission_plan_version(info.context, plan_id, effective_from,
                                                                   terms.to_terms())
        return CommissionPlanVersion.from_record(version)

    @strawberry.field(
        permission_classes=[AdminOnly],
        description="Put an affiliate on a plan from the start of a local day, tomorrow at the "
        "earliest (the default); before that day it keeps the plan it had. Admins only.",
    )
    async def assign_commission_plan(
        self,
        info: Info,
        affiliate_id: AffiliateId,
        plan_id: PlanId,
        effective_from: Annotated[
            date | None,
            strawberry.argument(description="The local date the plan takes effect: tomorrow or "
                                "later; null or omitted: tomorrow."),
        ] = None,
    ) -> CommissionPlanAssignment:
        assignment = await resolvers.assign_commission_plan(info.context, affiliate_id, plan_id,
                                                            effective_from)
        return CommissionPlanAssignment.from_record(assignment)

    @strawberry.field(permission_classes=[AdminOnly],
                      description="New CPA qualification criteria from a local date, tomorrow or later "
                                  "(criteria scheduled for that date are replaced). Admins only; audited.")
    async def schedule_qualification_criteria(
        self, info: Info, effective_from: EffectiveFrom,
        criteria: Annotated[QualificationCriteriaInput, strawberry.argument(
            description="What a user must reach to qualify.")],
    ) -> QualificationCriteria:
        row = await resolvers.schedule_qualification_criteria(info.context, effective_from,
                                                              criteria.to_terms())
        return QualificationCriteria.from_row(row)


register("CommissionPlan", CommissionPlan.from_record)
register("CommissionPlanVersion", CommissionPlanVersion.from_record)
register("QualificationCriteria", QualificationCriteria.from_row)
register("AuditEntry", AuditEntry.from_record)
