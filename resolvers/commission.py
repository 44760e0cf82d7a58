"""Commission plans (Query.commissionPlans/commissionPlan and the admin mutations), the
qualification criteria, plan assignments, the audit log, and the what-if simulation.

Who may call what is declared on the fields (``schema.commission``); here are the argument
checks of the API and the one data rule: an affiliate token sees only the plan it is on today.
The rules of plans (never retroactive, inputs naming the field) are the domain's
(``commissions.service``).
"""

from __future__ import annotations

from datetime import date

import asyncpg

from commissions import service
from db.reader import sql
from resolvers.arguments import as_int, decode_cursor, encode_cursor, parse_id
from resolvers.context import Context
from resolvers.errors import BadUserInput
from resolvers.global_ids import parse_entity_id
from resolvers.pagination import Page, page_of
from resolvers.statement import actor, parse_month, robust_connection

MAX_AUDIT_PAGE = 500
MAX_SIMULATION_PAGE = 1000
AUDIT_CURSOR = "audit_entry"
SIMULATION_CURSOR = "simulated_affiliate"
_COUNT_AUDIT = sql(
    "SELECT count(*) AS n FROM commission_audit_log "
    "WHERE (CAST(:entity AS text) IS NULL OR entity = :entity) "
    "AND (CAST(:entity_id AS text) IS NULL OR entity_id = :entity_id)"
)


async def commission_plans(ctx: Context) -> list[service.Plan]:
    """Every plan with its versions."""
    async with robust_connection(ctx) as conn:
        return await service.plans(conn, ctx.settings.timezone)


async def commission_plan(ctx: Context, id: str) -> service.Plan | None:
    """A plan with its versions; an affiliate token sees only the plan it is on today."""
    plan_id = parse_entity_id(id, "CommissionPlan", "id")
    tz = ctx.settings.timezone
    async with robust_connection(ctx) as conn:
        if not ctx.viewer.sees_everyone:
            if await service.current_plan_id(conn, tz, ctx.viewer.affiliate_id or 0) != plan_id:
                return None
        found = await service.plans(conn, tz, [plan_id])
    return found[0] if found else None


async def qualification_criteria(ctx: Context) -> list[asyncpg.Record]:
    """Every version of the program's qualification criteria, oldest first."""
    async with robust_connection(ctx) as conn:
        return await service.criteria_versions(conn)


async def audit_log(
    ctx: Context, entity: str | None, entity_id: str | None, first: int, before: str | None
) -> list[service.LogEntry]:
    """The audit log, newest first; ``before`` pages with an entry id."""
    if not 0 <= first <= 500:
        raise BadUserInput(f"first must be between 0 and 500, got {first}")
    before_id = parse_id(before, "before") if before is not None else None
    async with robust_connection(ctx) as conn:
        return await service.audit_entries(conn, entity=entity, entity_id=entity_id, before_id=before_id,
                                           first=first)


async def create_commission_plan(ctx: Context, name: str, terms: service.PlanTerms) -> service.Plan:
    """A new plan; its first version covers all dates."""
    async with robust_connection(ctx) as conn:
        return await service.create_plan(conn, ctx.settings.timezone, name, terms, actor(ctx))


async def schedule_commission_plan_version(
    ctx: Context, plan_id: str, effective_from: date, terms: service.PlanTerms
) -> service.PlanVersion:
    """A new version of a plan from ``effective_from`` (tomorrow or later)."""
    plan = parse_entity_id(plan_id, "CommissionPlan", "planId")
    async with robust_connection(ctx) as conn:
        return await service.schedule_version(conn, ctx.settings.timezone, plan, effective_from, terms,
                                              actor(ctx))


async def assign_commission_plan(
    ctx: Context, affiliate_id: str, plan_id: str, effective_from: date | None = None
) -> service.Assignment:
    """Put an affiliate on a plan from ``effective_from`` (tomorrow or later; default tomorrow)."""
    owner = parse_entity_id(affiliate_id, "Affiliate", "affiliateId")
    plan = parse_entity_id(plan_id, "CommissionPlan", "planId")
    async with robust_connection(ctx) as conn:
        return await service.assign_plan(conn, ctx.settings.timezone, owner, plan, actor(ctx),
                                         effective_from)


async def schedule_qualification_criteria(
    ctx: Context, effective_from: date, criteria: service.QualificationTerms
) -> asyncpg.Record:
    """New qualification criteria from ``effective_from`` (tomorrow or later)."""
    async with robust_connection(ctx) as conn:
        return await service.schedule_criteria(conn, ctx.settings.timezone, effective_from, criteria,
                                               actor(ctx))


async def simulate_commission_plan(
    ctx: Context, terms: service.PlanTerms, month: date, first: int, after: str | None
) -> service.Simulation:
    """For the month's data: what each affiliate would earn under ``terms`` against what it
    earned, with totals over everyone; ``first + 1`` affiliates are read (the extra one tells
    a connection that another page follows)."""
    month = parse_month(month)
    if not 0 <= first <= 1000:
        raise BadUserInput(f"first must be between 0 and 1000, got {first}")
    after_id = parse_id(after, "after") if after is not None else 0
    async with robust_connection(ctx) as conn:
        return await service.simulate(conn, ctx.settings.timezone, terms, month, first=first + 1,
                                      after=after_id)


async def audit_log_page(
    ctx: Context, entity: str | None, entity_id: str | None, first: int, after: str | None
) -> Page[service.LogEntry]:
    """The audit log newest first, as a keyset page with an opaque cursor; its size counted
    only when asked."""
    if not 0 <= first <= MAX_AUDIT_PAGE:
        raise BadUserInput(f"first must be between 0 and {MAX_AUDIT_PAGE}, got {first}")
    key = decode_cursor(after, AUDIT_CURSOR, (as_int,))
    async with robust_connection(ctx) as conn:
        found = await service.audit_entries(conn, entity=entity, entity_id=entity_id,
                                            before_id=key[0] if key is not None else None, first=first + 1)

    async def count() -> int:
        rows = await ctx.access.global_state(_COUNT_AUDIT, entity=entity, entity_id=entity_id)
        return int(rows[0].n)

    return page_of(found[:first], lambda e: encode_cursor(AUDIT_CURSOR, e.id), len(found) > first, after,
                   count)


def simulation_page_args(first: int | None, after: str | None) -> tuple[int, int]:
    """The page of a simulation's affiliates a connection asks for: (first, after id)."""
    size = 100 if first is None else first
    if not 0 <= size <= MAX_SIMULATION_PAGE:
        raise BadUserInput(f"first must be between 0 and {MAX_SIMULATION_PAGE}, got {size}")
    key = decode_cursor(after, SIMULATION_CURSOR, (as_int,))
    return size, key[0] if key is not None else 0


async def simulation(
    ctx: Context, terms: service.PlanTerms, month: date, first: int, after_id: int
) -> service.Simulation:
    """``simulate_commission_plan`` with the page given as (first, after id); one more row than
    asked for, so the page knows whether another follows."""
    month = parse_month(month)
    async with robust_connection(ctx) as conn:
        return await service.simulate(conn, ctx.settings.timezone, terms, month, first=first + 1,
                                      after=after_id)


def simulation_page(found: service.Simulation, first: int, after: str | None) -> Page[service.Comparison]:
    """A simulation read with ``first + 1`` rows as a connection page; its size is the
    simulation's affiliate count (the same statement computed it)."""
    async def count() -> int:
        return found.affiliate_count

    return page_of(found.affiliates[:first], lambda c: encode_cursor(SIMULATION_CURSOR, c.affiliate_id),
                   len(found.affiliates) > first, after, count)
