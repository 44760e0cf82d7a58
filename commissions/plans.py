"""Commission plans: their versions, who is on which plan since when (``PlanBook``), and the
admin changes to them.

Changes are never retroactive: a version or an assignment takes effect from the start of a local
day (business time zone), tomorrow at the earliest, so a day is priced by the terms in force
when it began. Every change writes the audit log in its own transaction; a trigger queues it
for the ETL (migration 0008), which applies it exactly once.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal

import asyncpg

from commissions import audit
from commissions.errors import InvalidCommissionInput
from commissions.inputs import PlanTerms, check_not_retroactive, check_terms, next_local_day
from commissions.months import add_months, local_today
from commissions.payout import PayoutTerms

EPOCH = date(1900, 1, 1)  # "since always": a plan's first version, an affiliate's first plan


# ------------------------------------------------------------------ plans in force
@dataclass
class PlanBook:
    """Plan versions and assignment history, to find each affiliate's terms on a day."""

    default_plan_id: int
    versions: dict[int, list[tuple[date, PayoutTerms]]]
    history: dict[int, list[tuple[date, int]]] = field(default_factory=dict)

    @classmethod
    async def load(cls, conn: asyncpg.Connection, affiliate_ids: Sequence[int] | None = None) -> PlanBook:
        default = await conn.fetchval("SELECT id FROM commission_plans WHERE is_default")
        versions: dict[int, list[tuple[date, PayoutTerms]]] = {}
        for r in await conn.fetch(
            "SELECT id, plan_id, effective_from, negative_carryover, min_payout "
            "FROM commission_plan_versions ORDER BY plan_id, effective_from"
        ):
            versions.setdefault(r["plan_id"], []).append(
                (
                    r["effective_from"],
                    PayoutTerms(r["plan_id"], r["id"], r["negative_carryover"], r["min_payout"]),
                )
            )
        if affiliate_ids is None:
            rows = await conn.fetch(
                "SELECT affiliate_id, effective_from, plan_id FROM affiliate_plan_history "
                "ORDER BY affiliate_id, effective_from"
            )
        else:
            rows = await conn.fetch(
                "SELECT affiliate_id, effective_from, plan_id FROM affiliate_plan_history "
                "WHERE affiliate_id = ANY($1::bigint[]) ORDER BY affiliate_id, effective_from",
                list(affiliate_ids),
            )
        history: dict[int, list[tuple[date, int]]] = {}
        for r in rows:
            history.setdefault(r["affiliate_id"], []).append((r["effective_from"], r["plan_id"]))
        return cls(default, versions, history)

    def plan_of(self, affiliate_id: int, day: date) -> int:
        entries = self.history.get(affiliate_id)
        if entries:
            i = bisect.bisect_right([d for d, _ in entries], day) - 1
            if i >= 0:
                return entries[i][1]
        return self.default_plan_id

    def terms(self, affiliate_id: int, month: date) -> PayoutTerms:
        """The terms in force on the month's last local day."""
        last_day = add_months(month, 1).toordinal() - 1
        day = date.fromordinal(last_day)
        versions = self.versions[self.plan_of(affiliate_id, day)]
        i = bisect.bisect_right([d for d, _ in versions], day) - 1
        return versions[max(i, 0)][1]


async def current_plan_id(conn: asyncpg.Connection, tz: str, affiliate_id: int) -> int:
    """The plan ``affiliate_id`` is on today (local date)."""
    book = await PlanBook.load(conn, [affiliate_id])
    return book.plan_of(affiliate_id, local_today(tz))


# ------------------------------------------------------------------ reads
@dataclass(frozen=True)
class PlanVersion:
    id: int
    plan_id: int
    effective_from: date
    cpa_by_level: list[Decimal]
    rev_share_by_level: list[Decimal]
    negative_carryover: bool
    min_payout: Decimal
    created_at: datetime

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> PlanVersion:
        return cls(
            id=row["id"], plan_id=row["plan_id"], effective_from=row["effective_from"],
            cpa_by_level=list(row["cpa_by_level"]), rev_share_by_level=list(row["rev_share_by_level"]),
            negative_carryover=row["negative_carryover"], min_payout=row["min_payout"],
            created_at=row["created_at"],
        )


@dataclass(frozen=True)
class Plan:
    id: int
    name: str
    is_default: bool
    created_at: datetime
    versions: list[PlanVersion]  # oldest first
    current_version: PlanVersion | None  # in force today (local date)


@dataclass(frozen=True)
class Assignment:
    affiliate_id: int
    plan_id: int
    effective_from: date


_VERSION_COLUMNS = """
SELECT id, plan_id, effective_from, negative_carryover, min_payout, created_at,
       ARRAY[cpa_level_1, cpa_level_2, cpa_level_3, cpa_level_4, cpa_level_5] AS cpa_by_level,
       ARRAY[rev_share_level_1, rev_share_level_2, rev_share_level_3, rev_share_level_4,
             rev_share_level_5] AS rev_share_by_level
FROM commission_plan_versions"""
_VERSIONS_OF_PLANS = _VERSION_COLUMNS + " WHERE plan_id = ANY($1::bigint[]) ORDER BY plan_id, effective_from"
_VERSION = _VERSION_COLUMNS + " WHERE id = $1"


async def plans(conn: asyncpg.Connection, tz: str, plan_ids: list[int] | None = None) -> list[Plan]:
    """The plans (all, or those of ``plan_ids``) by id, each with its versions."""
    if plan_ids is None:
        rows = await conn.fetch("SELECT * FROM commission_plans ORDER BY id")
    else:
        rows = await conn.fetch("SELECT * FROM commission_plans WHERE id = ANY($1::bigint[]) ORDER BY id",
                                plan_ids)
    versions: dict[int, list[PlanVersion]] = {}
    for v in await conn.fetch(_VERSIONS_OF_PLANS, [r["id"] for r in rows]):
        versions.setdefault(v["plan_id"], []).append(PlanVersion.from_row(v))
    today = local_today(tz)
    found = []
    for r in rows:
        own = versions.get(r["id"], [])
        in_force = [v for v in own if v.effective_from <= today]
        found.append(Plan(id=r["id"], name=r["name"], is_default=r["is_default"], created_at=r["created_at"],
                          versions=own, current_version=in_force[-1] if in_force else None))
    return found


# ------------------------------------------------------------------ changes
_INSERT_VERSION = """
INSERT INTO commission_plan_versions
    (plan_id, effective_from, cpa_level_1, cpa_level_2, cpa_level_3, cpa_level_4, cpa_level_5,
     rev_share_level_1, rev_share_level_2, rev_share_level_3, rev_share_level_4, rev_share_level_5,
     negative_carryover, min_payout)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
RETURNING *
"""


def _version_args(plan_id: int, effective_from: date, terms: PlanTerms) -> list[object]:
    return [plan_id, effective_from, *terms.cpa_by_level, *terms.rev_share_by_level,
            terms.negative_carryover, terms.min_payout]


async def _require_plan(conn: asyncpg.Connection, plan_id: int) -> None:
    if not await conn.fetchval("SELECT 1 FROM commission_plans WHERE id = $1", plan_id):
        raise InvalidCommissionInput(f"planId: no commission plan {plan_id}")


async def create_plan(conn: asyncpg.Connection, tz: str, name: str, terms: PlanTerms, actor: str) -> Plan:
    """A new plan; its first version covers all dates (a plan pays nobody until an affiliate
    is assigned to it, and assignments start tomorrow at the earliest)."""
    name = name.strip()
    if not name or len(name) > 200:
        raise InvalidCommissionInput("name must be 1 to 200 characters")
    checked = check_terms(terms)
    async with conn.transaction():
        if await conn.fetchval("SELECT 1 FROM commission_plans WHERE name = $1", name):
            raise InvalidCommissionInput(f"name: a plan named {name!r} exists")
        plan = await conn.fetchrow("INSERT INTO commission_plans (name) VALUES ($1) RETURNING *", name)
        version = await conn.fetchrow(_INSERT_VERSION, *_version_args(plan["id"], EPOCH, checked))
        await audit.record(conn, actor=actor, action="createCommissionPlan", entity="commission_plan",
                           entity_id=plan["id"], after={**dict(plan), "version": dict(version)})
        return (await plans(conn, tz, [plan["id"]]))[0]


async def schedule_version(
    conn: asyncpg.Connection, tz: str, plan_id: int, effective_from: date, terms: PlanTerms, actor: str
) -> PlanVersion:
    """A new version from ``effective_from`` (tomorrow or later). A version scheduled for a
    date after today may be replaced; one in force never changes."""
    check_not_retroactive(tz, effective_from)
    checked = check_terms(terms)
    async with conn.transaction():
        await _require_plan(conn, plan_id)
        before = await conn.fetchrow(
            "SELECT * FROM commission_plan_versions WHERE plan_id = $1 AND effective_from = $2 FOR UPDATE",
            plan_id, effective_from)
        if before is not None:  # scheduled, not yet in force (effective_from is after today)
            await conn.execute("DELETE FROM commission_plan_versions WHERE id = $1", before["id"])
        version = await conn.fetchrow(_INSERT_VERSION, *_version_args(plan_id, effective_from, checked))
        await audit.record(conn, actor=actor, action="scheduleCommissionPlanVersion",
                           entity="commission_plan", entity_id=plan_id, before=before, after=version)
        row = await conn.fetchrow(_VERSION, version["id"])
    return PlanVersion.from_row(row)


async def assign_plan(
    conn: asyncpg.Connection,
    tz: str,
    affiliate_id: int,
    plan_id: int,
    actor: str,
    effective_from: date | None = None,
) -> Assignment:
    """Put an affiliate on a plan from ``effective_from`` (tomorrow or later; default tomorrow,
    local date); before that day it keeps the plan it had. An assignment scheduled for the same
    day is replaced; one scheduled for a later day still takes effect on it."""
    start = next_local_day(tz) if effective_from is None else check_not_retroactive(tz, effective_from)
    async with conn.transaction():
        if not await conn.fetchval("SELECT 1 FROM affiliates WHERE affiliate_id = $1", affiliate_id):
            raise InvalidCommissionInput(f"affiliateId: no affiliate {affiliate_id}")
        await _require_plan(conn, plan_id)
        # One assignment of an affiliate at a time, so the history below is read whole.
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('fature.assign_plan'), $1::int)",
                           affiliate_id % 2_147_483_647)
        book = await PlanBook.load(conn, [affiliate_id])
        previous = book.plan_of(affiliate_id, start - timedelta(days=1))
        if not book.history.get(affiliate_id):
            # Keep what the past is paid under: the plan it was on (the default) since always.
            # It changes no price, so it is not queued for the ETL (migration 0008).
            await conn.execute(
                "INSERT INTO affiliate_plan_history (affiliate_id, effective_from, plan_id, assigned_by) "
                "VALUES ($1, $2, $3, $4)", affiliate_id, EPOCH, previous, actor)
        await conn.execute(
            "INSERT INTO affiliate_plan_history (affiliate_id, effective_from, plan_id, assigned_by) "
            "VALUES ($1, $2, $3, $4) ON CONFLICT (affiliate_id, effective_from) "
            "DO UPDATE SET plan_id = EXCLUDED.plan_id, assigned_at = now(), "
            "assigned_by = EXCLUDED.assigned_by",
            affiliate_id, start, plan_id, actor)
        await audit.record(conn, actor=actor, action="assignCommissionPlan", entity="affiliate",
                           entity_id=affiliate_id, before={"plan_id": previous},
                           after={"plan_id": plan_id, "effective_from": start})
    return Assignment(affiliate_id, plan_id, start)
