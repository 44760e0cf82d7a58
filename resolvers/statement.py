"""Statements: Query.statement/statements and the payout workflow mutations.

Who sees a statement: admins and analysts every one, an affiliate only its own (money is
personal: not even its downline's). The rule lives in ``may_read_money_of`` and every read
path (GraphQL and the exports) goes through it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date

import asyncpg
import strawberry
from strawberry.types import Info

from db.reader import UNAVAILABLE_ERRORS
from etl import statements as st
from resolvers.arguments import check_first, parse_id
from resolvers.context import Context
from resolvers.errors import BadUserInput, Forbidden, ServiceUnavailable
from resolvers.viewer import Viewer
from schema.statement import (
    CloseMonthResult,
    Statement,
    StatementLine,
    StatementLineKind,
    StatementStatus,
)
from schema.validation import CpaValidation

log = logging.getLogger("fature.api")


def may_read_money_of(viewer: Viewer, affiliate_id: int) -> bool:
    return viewer.sees_everyone or viewer.affiliate_id == affiliate_id


def require_admin(ctx: Context) -> None:
    if not ctx.viewer.may_run_mutations():
        raise Forbidden("Only admin tokens may run mutations")


def actor(ctx: Context) -> str:
    return f"{ctx.viewer.role.value}:{ctx.viewer.subject}"


@asynccontextmanager
async def robust_connection(ctx: Context) -> AsyncIterator[asyncpg.Connection]:
    """A pooled asyncpg connection of the API's engine (transactions, cursors, COPY)."""
    try:
        async with ctx.database.engine.connect() as conn:
            raw = await conn.get_raw_connection()
            yield raw.driver_connection  # type: ignore[misc]
    except UNAVAILABLE_ERRORS as exc:
        log.warning("robust database unavailable: %s", type(exc).__name__)
        raise ServiceUnavailable() from exc


def parse_month(value: date, name: str = "month") -> date:
    if value.day != 1:
        raise BadUserInput(f"{name} must be the first day of a month (a month is named by its first "
                           f"local date), got {value.isoformat()}")
    return value


def parse_statement_id(value: object) -> tuple[int, date]:
    text = str(value)
    owner, _, month = text.partition(":")
    try:
        year, _, mon = month.partition("-")
        parsed = date(int(year), int(mon), 1)
    except ValueError as exc:
        raise BadUserInput(f"id must look like '<affiliateId>:<YYYY-MM>', got {text[:40]!r}") from exc
    return parse_id(owner, "id"), parsed


def from_stored(row: asyncpg.Record) -> Statement:
    return Statement(
        id=strawberry.ID(f"{row['affiliate_id']}:{row['month']:%Y-%m}"),
        affiliate_id=strawberry.ID(str(row["affiliate_id"])), owner=row["affiliate_id"],
        month=row["month"], status=StatementStatus(row["status"]),
        plan_id=strawberry.ID(str(row["plan_id"])),
        plan_version_id=strawberry.ID(str(row["plan_version_id"])),
        negative_carryover=row["negative_carryover"], min_payout=row["min_payout"],
        cpa_validated=row["cpa_validated"], cpa_rejected=row["cpa_rejected"], cpa=row["cpa"],
        rev=row["rev"], cpa_adjustments=row["cpa_adjustments"], rev_adjustments=row["rev_adjustments"],
        adjustments=row["cpa_adjustments"] + row["rev_adjustments"], carryover_in=row["carryover_in"],
        rev_payable=row["rev_payable"], carryover_out=row["carryover_out"], held_in=row["held_in"],
        payable=row["payable"], held_out=row["held_out"],
        below_min_payout=row["payable"] < row["min_payout"] or row["payable"] <= 0,
        closed_at=row["closed_at"], approved_at=row["approved_at"], paid_at=row["paid_at"],
        payment_reference=row["payment_reference"],
    )


def from_open(open_statement: st.OpenStatement) -> Statement:
    s, f, t = open_statement.settlement, open_statement.settlement.figures, open_statement.settlement.terms
    return Statement(
        id=strawberry.ID(f"{open_statement.affiliate_id}:{open_statement.month:%Y-%m}"),
        affiliate_id=strawberry.ID(str(open_statement.affiliate_id)), owner=open_statement.affiliate_id,
        month=open_statement.month, status=StatementStatus.OPEN,
        plan_id=strawberry.ID(str(t.plan_id)), plan_version_id=strawberry.ID(str(t.plan_version_id)),
        negative_carryover=t.negative_carryover, min_payout=t.min_payout,
        cpa_validated=f.cpa_validated, cpa_rejected=f.cpa_rejected, cpa=s.cpa, rev=f.rev,
        cpa_adjustments=f.cpa_adjustments, rev_adjustments=f.rev_adjustments,
        adjustments=f.cpa_adjustments + f.rev_adjustments, carryover_in=s.carryover_in,
        rev_payable=s.rev_payable, carryover_out=s.carryover_out, held_in=s.held_in, payable=s.payable,
        held_out=s.held_out, below_min_payout=s.on_hold, closed_at=None, approved_at=None, paid_at=None,
        payment_reference=None,
    )


def line_from(row: asyncpg.Record) -> StatementLine:
    adjustment = row["kind"].endswith("_adjustment")
    return StatementLine(
        kind=StatementLineKind(row["kind"]), amount=row["amount"], amount_paid=row["amount_paid"],
        level=row["level"], day=row["day"],
        validation_id=strawberry.ID(str(row["validation_id"])) if row["validation_id"] else None,
        referred_user_id=strawberry.ID(str(row["referred_user_id"])) if row["referred_user_id"] else None,
        corrects_month=row["for_month"] if adjustment else None, description=row["description"],
    )


async def load_statement(
    conn: asyncpg.Connection, tz: str, affiliate_id: int, month: date
) -> Statement | None:
    row = await conn.fetchrow(st._STATEMENT, affiliate_id, month)
    if row is not None:
        return from_stored(row)
    closed = await st.last_closed_month(conn)
    if closed is not None and month <= closed:
        return None  # a closed month without a statement for this affiliate: nothing was due
    if month > st.month_start(st.local_today(tz)):
        return None
    found = await st.open_statement(conn, tz, affiliate_id, month)
    return from_open(found) if found is not None else None


async def statement(info: Info, id: strawberry.ID) -> Statement | None:
    """Null when there is no statement or the token may not see it."""
    ctx: Context = info.context
    affiliate_id, month = parse_statement_id(id)
    if not may_read_money_of(ctx.viewer, affiliate_id):
        return None
    async with robust_connection(ctx) as conn:
        return await load_statement(conn, ctx.settings.timezone, affiliate_id, month)


async def statements(
    info: Info, month: date, affiliate_id: strawberry.ID | None = None,
    status: StatementStatus | None = None, first: int | None = 20, after: strawberry.ID | None = None,
) -> list[Statement]:
    """The month's statements ordered by affiliate id (an affiliate token: its own only)."""
    ctx: Context = info.context
    month = parse_month(month)
    size = check_first(first, ctx.max_page_size)
    after_id = parse_id(after, "after") if after is not None else 0
    owner = parse_id(affiliate_id, "affiliateId") if affiliate_id is not None else None
    if not ctx.viewer.sees_everyone:
        if owner is not None and owner != ctx.viewer.affiliate_id:
            return []
        owner = ctx.viewer.affiliate_id
    tz = ctx.settings.timezone
    result: list[Statement] = []
    async with robust_connection(ctx) as conn:
        closed = await st.last_closed_month(conn)
        if closed is not None and month <= closed:
            rows = await conn.fetch(
                "SELECT * FROM commission_statements WHERE month = $1 AND affiliate_id > $2 "
                "AND ($3::bigint IS NULL OR affiliate_id = $3) AND ($4::text IS NULL OR status = $4) "
                "ORDER BY affiliate_id LIMIT $5",
                month, after_id, owner, status.value if status else None, size)
            return [from_stored(r) for r in rows]
        if status not in (None, StatementStatus.OPEN) or month > st.month_start(st.local_today(tz)):
            return []
        async with conn.transaction(readonly=True, isolation="repeatable_read"):
            ids = [owner] if owner is not None else None
            async for found in st.stream_open_statements(conn, tz, month, ids, after=after_id, limit=size):
                result.append(from_open(found))
    return result


async def statement_lines(info: Info, parent: Statement) -> list[StatementLine]:
    ctx: Context = info.context
    if not may_read_money_of(ctx.viewer, parent.owner):
        return []
    async with robust_connection(ctx) as conn:
        if parent.status is StatementStatus.OPEN:
            rows = await st.open_lines(conn, ctx.settings.timezone, parent.owner, parent.month)
        else:
            rows = await st.stored_lines(conn, parent.owner, parent.month)
    return [line_from(r) for r in rows]


# ------------------------------------------------------------------ mutations
async def _workflow_step(info: Info, step: str, **kwargs: object) -> Statement:
    ctx: Context = info.context
    require_admin(ctx)
    affiliate_id, month = parse_statement_id(kwargs.pop("id"))
    async with robust_connection(ctx) as conn:
        try:
            if step == "approve":
                row = await st.approve_statement(conn, affiliate_id, month, actor(ctx))
            else:
                row = await st.mark_statement_paid(conn, affiliate_id, month, str(kwargs["reference"]),
                                                   actor(ctx))
        except st.StatementError as exc:
            raise BadUserInput(str(exc)) from exc
    return from_stored(row)


async def approve_statement(info: Info, id: strawberry.ID) -> Statement:
    """closed -> approved; its pending validations become approved."""
    return await _workflow_step(info, "approve", id=id)


async def mark_statement_paid(info: Info, id: strawberry.ID, reference: str) -> Statement:
    """approved -> paid with the payment's reference; its validations become paid."""
    if not reference.strip():
        raise BadUserInput("reference must not be empty")
    return await _workflow_step(info, "paid", id=id, reference=reference.strip())


async def close_month(info: Info, month: date) -> CloseMonthResult:
    """Freeze the month's statements (and every earlier open month's, oldest first)."""
    ctx: Context = info.context
    require_admin(ctx)
    month = parse_month(month)
    async with robust_connection(ctx) as conn:
        try:
            result = await st.close_month(conn, ctx.settings.timezone, month, actor(ctx))
        except st.StatementError as exc:
            raise BadUserInput(str(exc)) from exc
    return CloseMonthResult(months=result.months, statements=result.statements, lines=result.lines)


async def reject_cpa_validation(info: Info, id: strawberry.ID, reason: str) -> CpaValidation:
    """Set cpa_status rejected (never on a paid one); the open statement adjusts at once."""
    ctx: Context = info.context
    require_admin(ctx)
    validation_id = parse_id(id, "id")
    if not reason.strip():
        raise BadUserInput("reason must not be empty")
    async with robust_connection(ctx) as conn:
        try:
            await st.reject_validation(conn, validation_id, reason.strip(), actor(ctx))
        except st.StatementError as exc:
            raise BadUserInput(str(exc)) from exc
    row = await ctx.loaders.cpa_validation_by_id.load(validation_id)
    return CpaValidation.from_row(row)
