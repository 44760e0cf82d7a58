"""Commission plans (Query.commissionPlans/commissionPlan, admin mutations), the qualification
criteria, plan assignments, the audit log, and the what-if simulation.

Changes are never retroactive: a version or criteria set takes effect today or later (local
business date), an assignment from today. Every mutation writes the audit log in its own
transaction. Input errors name the field (``terms.revShareByLevel[3]``).
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import asyncpg
import strawberry
from strawberry.types import Info

from etl import audit
from etl import statements as st
from resolvers.arguments import parse_id
from resolvers.context import Context
from resolvers.errors import BadUserInput, Forbidden
from resolvers.statement import actor, parse_month, require_admin, robust_connection
from schema.commission import (
    AuditEntry,
    CommissionAmounts,
    CommissionPlan,
    CommissionPlanAssignment,
    CommissionPlanTermsInput,
    CommissionPlanVersion,
    CommissionSimulation,
    QualificationCriteria,
    QualificationCriteriaInput,
    SimulatedAffiliate,
)

MAX_MONEY = Decimal("999999999999.99")  # numeric(14,2)
ONE = Decimal(1)

_VERSIONS = """
SELECT id, plan_id, effective_from, negative_carryover, min_payout, created_at,
       ARRAY[cpa_level_1, cpa_level_2, cpa_level_3, cpa_level_4, cpa_level_5] AS cpa_by_level,
       ARRAY[rev_share_level_1, rev_share_level_2, rev_share_level_3, rev_share_level_4,
             rev_share_level_5] AS rev_share_by_level
FROM commission_plan_versions WHERE plan_id = ANY($1::bigint[]) ORDER BY plan_id, effective_from
"""


# ------------------------------------------------------------------ input checks
def _places(value: Decimal) -> int:
    exponent = value.as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def check_money(value: Decimal, name: str) -> Decimal:
    if not value.is_finite():
        raise BadUserInput(f"{name} must be a number, got {value}")
    if value < 0:
        raise BadUserInput(f"{name} must be >= 0, got {value}")
    if value > MAX_MONEY or _places(value) > 2:
        raise BadUserInput(f"{name} must be an amount with at most 2 decimal places up to {MAX_MONEY}, "
                           f"got {value}")
    return value.quantize(Decimal("0.01"))


def check_share(value: Decimal, name: str) -> Decimal:
    if not value.is_finite() or not 0 <= value <= ONE:
        raise BadUserInput(f"{name} must be between 0 and 1, got {value}")
    if _places(value) > 6:
        raise BadUserInput(f"{name} must have at most 6 decimal places, got {value}")
    return value


def check_terms(terms: CommissionPlanTermsInput, name: str = "terms") -> dict[str, object]:
    """The input as the columns of commission_plan_versions, or BadUserInput naming the field."""
    for field, values in (("cpaByLevel", terms.cpa_by_level), ("revShareByLevel", terms.rev_share_by_level)):
        if len(values) != 5:
            raise BadUserInput(f"{name}.{field} must have exactly five levels (1-5), got {len(values)}")
    columns: dict[str, object] = {}
    for i, amount in enumerate(terms.cpa_by_level, start=1):
        columns[f"cpa_level_{i}"] = check_money(amount, f"{name}.cpaByLevel[{i}]")
    for i, share in enumerate(terms.rev_share_by_level, start=1):
        columns[f"rev_share_level_{i}"] = check_share(share, f"{name}.revShareByLevel[{i}]")
    columns["negative_carryover"] = terms.negative_carryover
    columns["min_payout"] = check_money(terms.min_payout, f"{name}.minPayout")
    return columns


def check_not_retroactive(ctx: Context, effective_from: date, name: str = "effectiveFrom") -> date:
    today = st.local_today(ctx.settings.timezone)
    if effective_from < today:
        raise BadUserInput(f"{name} must be today ({today.isoformat()}) or later: changes are never "
                           f"retroactive, got {effective_from.isoformat()}")
    return effective_from


# ------------------------------------------------------------------ reads
def _version(row: asyncpg.Record) -> CommissionPlanVersion:
    return CommissionPlanVersion(
        id=strawberry.ID(str(row["id"])), plan_id=strawberry.ID(str(row["plan_id"])),
        effective_from=row["effective_from"], cpa_by_level=list(row["cpa_by_level"]),
        rev_share_by_level=list(row["rev_share_by_level"]), negative_carryover=row["negative_carryover"],
        min_payout=row["min_payout"], created_at=row["created_at"],
    )


async def _plans(conn: asyncpg.Connection, tz: str, plan_ids: list[int] | None) -> list[CommissionPlan]:
    if plan_ids is None:
        rows = await conn.fetch("SELECT * FROM commission_plans ORDER BY id")
    else:
        rows = await conn.fetch("SELECT * FROM commission_plans WHERE id = ANY($1::bigint[]) ORDER BY id",
                                plan_ids)
    versions: dict[int, list[CommissionPlanVersion]] = {}
    for v in await conn.fetch(_VERSIONS, [r["id"] for r in rows]):
        versions.setdefault(v["plan_id"], []).append(_version(v))
    today = st.local_today(tz)
    plans = []
    for r in rows:
        own = versions.get(r["id"], [])
        in_force = [v for v in own if v.effective_from <= today]
        plans.append(CommissionPlan(
            id=strawberry.ID(str(r["id"])), name=r["name"], is_default=r["is_default"],
            created_at=r["created_at"], versions=own, current_version=in_force[-1] if in_force else None))
    return plans


async def commission_plans(info: Info) -> list[CommissionPlan]:
    """Every plan with its versions (admins and analysts)."""
    ctx: Context = info.context
    if not ctx.viewer.sees_everyone:
        raise Forbidden("Only admin and analyst tokens may list commission plans")
    async with robust_connection(ctx) as conn:
        return await _plans(conn, ctx.settings.timezone, None)


async def commission_plan(info: Info, id: strawberry.ID) -> CommissionPlan | None:
    """A plan with its versions; an affiliate token sees only the plan it is on today."""
    ctx: Context = info.context
    plan_id = parse_id(id, "id")
    async with robust_connection(ctx) as conn:
        if not ctx.viewer.sees_everyone:
            book = await st.PlanBook.load(conn, [ctx.viewer.affiliate_id or 0])
            today = st.local_today(ctx.settings.timezone)
            if book.plan_of(ctx.viewer.affiliate_id or 0, today) != plan_id:
                return None
        found = await _plans(conn, ctx.settings.timezone, [plan_id])
    return found[0] if found else None


async def qualification_criteria(info: Info) -> list[QualificationCriteria]:
    """Every version of the program's qualification criteria, oldest first."""
    ctx: Context = info.context
    async with robust_connection(ctx) as conn:
        rows = await conn.fetch("SELECT * FROM qualification_criteria_versions ORDER BY effective_from")
    return [_criteria(r) for r in rows]


def _criteria(r: asyncpg.Record) -> QualificationCriteria:
    return QualificationCriteria(
        id=strawberry.ID(str(r["id"])), effective_from=r["effective_from"], min_deposits=r["min_deposits"],
        min_stake=r["min_stake"], min_active_days=r["min_active_days"], window_days=r["window_days"],
        created_at=r["created_at"])


async def audit_log(
    info: Info, entity: str | None = None, entity_id: str | None = None, first: int = 50,
    before: strawberry.ID | None = None,
) -> list[AuditEntry]:
    """The audit log, newest first (admins only); ``before`` pages with an entry id."""
    ctx: Context = info.context
    require_admin(ctx)
    if not 0 <= first <= 500:
        raise BadUserInput(f"first must be between 0 and 500, got {first}")
    before_id = parse_id(before, "before") if before is not None else None
    async with robust_connection(ctx) as conn:
        rows = await conn.fetch(
            "SELECT id, at, actor, action, entity, entity_id, before::text AS before, after::text AS after "
            "FROM commission_audit_log WHERE ($1::text IS NULL OR entity = $1) "
            "AND ($2::text IS NULL OR entity_id = $2) AND ($3::bigint IS NULL OR id < $3) "
            "ORDER BY id DESC LIMIT $4", entity, entity_id, before_id, first)
    import orjson

    return [AuditEntry(
        id=strawberry.ID(str(r["id"])), at=r["at"], actor=r["actor"], action=r["action"], entity=r["entity"],
        entity_id=r["entity_id"], before=orjson.loads(r["before"]) if r["before"] else None,
        after=orjson.loads(r["after"]) if r["after"] else None) for r in rows]


# ------------------------------------------------------------------ mutations
_INSERT_VERSION = """
INSERT INTO commission_plan_versions
    (plan_id, effective_from, cpa_level_1, cpa_level_2, cpa_level_3, cpa_level_4, cpa_level_5,
     rev_share_level_1, rev_share_level_2, rev_share_level_3, rev_share_level_4, rev_share_level_5,
     negative_carryover, min_payout)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
RETURNING *
"""


def _version_args(plan_id: int, effective_from: date, c: dict[str, object]) -> list[object]:
    return [plan_id, effective_from, *(c[f"cpa_level_{i}"] for i in range(1, 6)),
            *(c[f"rev_share_level_{i}"] for i in range(1, 6)), c["negative_carryover"], c["min_payout"]]


async def create_commission_plan(info: Info, name: str, terms: CommissionPlanTermsInput) -> CommissionPlan:
    """A new plan; its first version covers all dates (a plan pays nobody until an affiliate
    is assigned to it, and assignments start today)."""
    ctx: Context = info.context
    require_admin(ctx)
    name = name.strip()
    if not name or len(name) > 200:
        raise BadUserInput("name must be 1 to 200 characters")
    columns = check_terms(terms)
    async with robust_connection(ctx) as conn, conn.transaction():
        if await conn.fetchval("SELECT 1 FROM commission_plans WHERE name = $1", name):
            raise BadUserInput(f"name: a plan named {name!r} exists")
        plan = await conn.fetchrow("INSERT INTO commission_plans (name) VALUES ($1) RETURNING *", name)
        version = await conn.fetchrow(_INSERT_VERSION, *_version_args(plan["id"], st.EPOCH, columns))
        await audit.record(conn, actor=actor(ctx), action="createCommissionPlan", entity="commission_plan",
                           entity_id=plan["id"], after={**dict(plan), "version": dict(version)})
        return (await _plans(conn, ctx.settings.timezone, [plan["id"]]))[0]


async def schedule_commission_plan_version(
    info: Info, plan_id: strawberry.ID, effective_from: date, terms: CommissionPlanTermsInput,
) -> CommissionPlanVersion:
    """A new version from ``effectiveFrom`` (today or later). A version already scheduled for
    a later date than today may be replaced; one in force may not."""
    ctx: Context = info.context
    require_admin(ctx)
    plan = parse_id(plan_id, "planId")
    check_not_retroactive(ctx, effective_from)
    columns = check_terms(terms)
    today = st.local_today(ctx.settings.timezone)
    async with robust_connection(ctx) as conn, conn.transaction():
        if not await conn.fetchval("SELECT 1 FROM commission_plans WHERE id = $1", plan):
            raise BadUserInput(f"planId: no commission plan {plan}")
        before = await conn.fetchrow(
            "SELECT * FROM commission_plan_versions WHERE plan_id = $1 AND effective_from = $2 FOR UPDATE",
            plan, effective_from)
        if before is not None:
            if effective_from <= today:
                raise BadUserInput(f"effectiveFrom: the version of {effective_from.isoformat()} is in force "
                                   "and cannot be replaced; schedule one from tomorrow")
            await conn.execute("DELETE FROM commission_plan_versions WHERE id = $1", before["id"])
        version = await conn.fetchrow(_INSERT_VERSION, *_version_args(plan, effective_from, columns))
        await audit.record(conn, actor=actor(ctx), action="scheduleCommissionPlanVersion",
                           entity="commission_plan", entity_id=plan, before=before, after=version)
        row = await conn.fetchrow(_VERSIONS.replace("plan_id = ANY($1::bigint[])", "id = $1"), version["id"])
    return _version(row)


async def assign_commission_plan(
    info: Info, affiliate_id: strawberry.ID, plan_id: strawberry.ID,
) -> CommissionPlanAssignment:
    """Put an affiliate on a plan from today (local date); before today it keeps its old plan."""
    ctx: Context = info.context
    require_admin(ctx)
    owner = parse_id(affiliate_id, "affiliateId")
    plan = parse_id(plan_id, "planId")
    today = st.local_today(ctx.settings.timezone)
    async with robust_connection(ctx) as conn, conn.transaction():
        if not await conn.fetchval("SELECT 1 FROM affiliates WHERE affiliate_id = $1", owner):
            raise BadUserInput(f"affiliateId: no affiliate {owner}")
        if not await conn.fetchval("SELECT 1 FROM commission_plans WHERE id = $1", plan):
            raise BadUserInput(f"planId: no commission plan {plan}")
        book = await st.PlanBook.load(conn, [owner])
        previous = book.plan_of(owner, today)
        if not book.history.get(owner):  # keep what the past was paid under
            await conn.execute(
                "INSERT INTO affiliate_plan_history (affiliate_id, effective_from, plan_id, assigned_by) "
                "VALUES ($1, $2, $3, $4)", owner, st.EPOCH, previous, actor(ctx))
        await conn.execute(
            "INSERT INTO affiliate_plan_history (affiliate_id, effective_from, plan_id, assigned_by) "
            "VALUES ($1, $2, $3, $4) ON CONFLICT (affiliate_id, effective_from) "
            "DO UPDATE SET plan_id = EXCLUDED.plan_id, assigned_at = now(), "
            "assigned_by = EXCLUDED.assigned_by",
            owner, today, plan, actor(ctx))
        await conn.execute(
            "INSERT INTO affiliate_plan_assignments (affiliate_id, plan_id) VALUES ($1, $2) "
            "ON CONFLICT (affiliate_id) DO UPDATE SET plan_id = EXCLUDED.plan_id, assigned_at = now()",
            owner, plan)
        await audit.record(conn, actor=actor(ctx), action="assignCommissionPlan", entity="affiliate",
                           entity_id=owner, before={"plan_id": previous},
                           after={"plan_id": plan, "effective_from": today})
    return CommissionPlanAssignment(affiliate_id=strawberry.ID(str(owner)), plan_id=strawberry.ID(str(plan)),
                                    effective_from=today)


async def schedule_qualification_criteria(
    info: Info, effective_from: date, criteria: QualificationCriteriaInput,
) -> QualificationCriteria:
    """New qualification criteria from ``effectiveFrom`` (today or later)."""
    ctx: Context = info.context
    require_admin(ctx)
    check_not_retroactive(ctx, effective_from)
    deposits = check_money(criteria.min_deposits, "criteria.minDeposits")
    stake = check_money(criteria.min_stake, "criteria.minStake")
    if not 0 <= criteria.min_active_days <= 366:
        raise BadUserInput(
            f"criteria.minActiveDays must be between 0 and 366, got {criteria.min_active_days}")
    if criteria.window_days is not None and not 1 <= criteria.window_days <= 3660:
        raise BadUserInput(
            f"criteria.windowDays must be between 1 and 3660 (or null), got {criteria.window_days}")
    today = st.local_today(ctx.settings.timezone)
    async with robust_connection(ctx) as conn, conn.transaction():
        before = await conn.fetchrow(
            "SELECT * FROM qualification_criteria_versions WHERE effective_from = $1 FOR UPDATE",
            effective_from)
        if before is not None:
            if effective_from <= today:
                raise BadUserInput(f"effectiveFrom: the criteria of {effective_from.isoformat()} are in "
                                   "force "
                                   "and cannot be replaced; schedule them from tomorrow")
            await conn.execute("DELETE FROM qualification_criteria_versions WHERE id = $1", before["id"])
        row = await conn.fetchrow(
            "INSERT INTO qualification_criteria_versions (effective_from, min_deposits, min_stake, "
            "min_active_days, window_days) VALUES ($1, $2, $3, $4, $5) RETURNING *",
            effective_from, deposits, stake, criteria.min_active_days, criteria.window_days)
        await audit.record(conn, actor=actor(ctx), action="scheduleQualificationCriteria",
                           entity="qualification_criteria", entity_id=row["id"], before=before, after=row)
    return _criteria(row)


# ------------------------------------------------------------------ what-if
# Per affiliate, for the month: what was earned (CPA not rejected, daily REV) and what the
# proposed plan would pay (its CPA amount per validation level, its share of each daily
# level GGR, rounded per day like the ETL). One row of totals over everyone, joined to the
# page (affiliates above $5, at most $6; none when the page is empty).
_SIMULATE = """
WITH cpa AS (
    SELECT affiliate_id,
           sum(cpa_amount) AS actual,
           sum(($4::numeric[])[cpa_level]) AS simulated
    FROM affiliate_cpa_validations
    WHERE cpa_status <> 'rejected'
      AND validation_date >= ($2::date::timestamp AT TIME ZONE $1)
      AND validation_date < (($2::date + interval '1 month') AT TIME ZONE $1)
    GROUP BY affiliate_id
), rev AS (
    SELECT affiliate_id, sum(rev) AS actual,
           sum(CASE WHEN bet_count > 0 THEN round(($3::numeric[])[level] * (stake - win), 2) ELSE 0 END)
               AS simulated
    FROM etl.affiliate_level_periods
    WHERE period_type = 'daily' AND period_start >= $2::date
      AND period_start < ($2::date + interval '1 month')
    GROUP BY affiliate_id
), joined AS (
    SELECT coalesce(c.affiliate_id, r.affiliate_id) AS affiliate_id,
           coalesce(c.actual, 0)::numeric(18,2) AS actual_cpa,
           coalesce(r.actual, 0)::numeric(18,2) AS actual_rev,
           coalesce(c.simulated, 0)::numeric(18,2) AS simulated_cpa,
           coalesce(r.simulated, 0)::numeric(18,2) AS simulated_rev
    FROM cpa c FULL JOIN rev r ON r.affiliate_id = c.affiliate_id
), totals AS (
    SELECT count(*) AS affiliate_count,
           coalesce(sum(actual_cpa), 0)::numeric(18,2) AS total_actual_cpa,
           coalesce(sum(actual_rev), 0)::numeric(18,2) AS total_actual_rev,
           coalesce(sum(simulated_cpa), 0)::numeric(18,2) AS total_simulated_cpa,
           coalesce(sum(simulated_rev), 0)::numeric(18,2) AS total_simulated_rev
    FROM joined
)
SELECT t.*, page.*
FROM totals t
LEFT JOIN LATERAL (
    SELECT * FROM joined WHERE affiliate_id > $5 ORDER BY affiliate_id LIMIT $6
) AS page ON true
ORDER BY page.affiliate_id
"""


def _amounts(cpa: Decimal, rev: Decimal) -> CommissionAmounts:
    return CommissionAmounts(cpa=cpa, rev=rev, total=cpa + rev)


def _simulated_affiliate(r: asyncpg.Record) -> SimulatedAffiliate:
    actual = _amounts(r["actual_cpa"], r["actual_rev"])
    simulated = _amounts(r["simulated_cpa"], r["simulated_rev"])
    return SimulatedAffiliate(affiliate_id=strawberry.ID(str(r["affiliate_id"])), actual=actual,
                              simulated=simulated, difference=simulated.total - actual.total)


async def simulate_commission_plan(
    info: Info, terms: CommissionPlanTermsInput, month: date, first: int = 100,
    after: strawberry.ID | None = None,
) -> CommissionSimulation:
    """For the month's data: what each affiliate would earn under ``terms`` against what it
    earned (admins and analysts), with totals over everyone."""
    ctx: Context = info.context
    if not ctx.viewer.sees_everyone:
        raise Forbidden("Only admin and analyst tokens may simulate plans")
    month = parse_month(month)
    columns = check_terms(terms)
    if not 0 <= first <= 1000:
        raise BadUserInput(f"first must be between 0 and 1000, got {first}")
    after_id = parse_id(after, "after") if after is not None else 0
    shares = [columns[f"rev_share_level_{i}"] for i in range(1, 6)]
    amounts = [columns[f"cpa_level_{i}"] for i in range(1, 6)]
    async with robust_connection(ctx) as conn:
        found = await conn.fetch(_SIMULATE, ctx.settings.timezone, month, shares, amounts, after_id, first)
    page = [_simulated_affiliate(r) for r in found if r["affiliate_id"] is not None]
    totals = found[0]
    actual_total = _amounts(totals["total_actual_cpa"], totals["total_actual_rev"])
    simulated_total = _amounts(totals["total_simulated_cpa"], totals["total_simulated_rev"])
    return CommissionSimulation(
        month=month, affiliates=page, affiliate_count=totals["affiliate_count"], actual=actual_total,
        simulated=simulated_total, difference=simulated_total.total - actual_total.total)
