"""Statements: Query.statement/statements, a statement's lines, the month close and the
payout workflow mutations (their admin-only permission is declared on the fields).

Who sees a statement: admins and analysts every one, an affiliate only its own (money is
personal: not even its downline's). The rule lives in ``may_read_money_of`` and every read
path (GraphQL and the exports) goes through it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import date
from typing import Any

import asyncpg
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from commissions import service
from commissions.months import last_closed_month
from db.engine import QueryTimeout, timeout_ms
from db.reader import UNAVAILABLE_ERRORS, sql
from resolvers.arguments import as_int, check_first, decode_cursor, encode_cursor, parse_id
from resolvers.context import Context
from resolvers.errors import BadUserInput, ServiceUnavailable
from resolvers.global_ids import parse_entity_id, parse_global_id
from resolvers.pagination import Page, page_of
from resolvers.viewer import Viewer

log = logging.getLogger("fature.api")


def may_read_money_of(viewer: Viewer, affiliate_id: int) -> bool:
    return viewer.sees_everyone or viewer.affiliate_id == affiliate_id


def actor(ctx: Context) -> str:
    """Who a change is audited as: the token's role and subject."""
    return f"{ctx.viewer.role.value}:{ctx.viewer.subject}"


@asynccontextmanager
async def robust_connection(ctx: Context) -> AsyncIterator[asyncpg.Connection]:
    """A pooled asyncpg connection of the API's engine (transactions, cursors, COPY).

    Statement pages, simulations and the workflow may run ``long_read_timeout_seconds`` a
    statement: the connection's statement_timeout is raised while it is lent and reset (to the
    engine's read timeout) before it goes back to the pool; a connection that cannot be reset
    is discarded. A statement the server cancels raises ``QueryTimeout`` (the code TIMEOUT)."""
    try:
        async with ctx.database.engine.connect() as conn:
            raw = await conn.get_raw_connection()
            driver: asyncpg.Connection = raw.driver_connection
            milliseconds = timeout_ms(ctx.settings.long_read_timeout_seconds)
            await driver.execute(f"SET statement_timeout = {milliseconds:d}")
            try:
                yield driver
            finally:
                await _reset_timeout(conn, driver)
    except asyncpg.QueryCanceledError as exc:  # before UNAVAILABLE_ERRORS: it is one of them
        log.warning("robust database statement cancelled by its statement_timeout")
        raise QueryTimeout() from exc
    except UNAVAILABLE_ERRORS as exc:
        log.warning("robust database unavailable: %s", type(exc).__name__)
        raise ServiceUnavailable() from exc


async def _reset_timeout(conn: AsyncConnection, driver: asyncpg.Connection) -> None:
    """The connection's own statement_timeout again (the one it was opened with), or the
    connection discarded when it cannot say so (broken, busy, inside a failed transaction)."""
    try:
        if driver.is_in_transaction():
            raise asyncpg.InterfaceError("left inside a transaction")
        await driver.execute("RESET statement_timeout")
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError):
        await conn.invalidate()


def parse_month(value: date, name: str = "month") -> date:
    if value.day != 1:
        raise BadUserInput(f"{name} must be the first day of a month (a month is named by its first "
                           f"local date), got {value.isoformat()}")
    return value


def parse_statement_id(value: object) -> tuple[int, date]:
    """A statement's number ``'<affiliateId>:<YYYY-MM>'`` or its global id."""
    text = str(value)
    if ":" not in text:
        owner_id, month_start_day = parse_global_id(text, "id", "Statement").key
        return owner_id, month_start_day
    owner, _, month = text.partition(":")
    try:
        year, _, mon = month.partition("-")
        parsed = date(int(year), int(mon), 1)
    except ValueError as exc:
        raise BadUserInput(f"id must look like '<affiliateId>:<YYYY-MM>', got {text[:40]!r}") from exc
    return parse_id(owner, "id"), parsed


async def statement(ctx: Context, id: str) -> service.StatementRecord | None:
    """None when there is no statement or the token may not see it."""
    affiliate_id, month = parse_statement_id(id)
    if not may_read_money_of(ctx.viewer, affiliate_id):
        return None
    async with robust_connection(ctx) as conn:
        return await service.statement(conn, ctx.settings.timezone, affiliate_id, month)


async def statements(
    ctx: Context, month: date, affiliate_id: str | None, status: str | None, first: int | None,
    after: str | None,
) -> list[service.StatementRecord]:
    """The month's statements ordered by affiliate id (an affiliate token: its own only)."""
    month = parse_month(month)
    size = check_first(first, ctx.max_page_size)
    after_id = parse_id(after, "after") if after is not None else 0
    owner = parse_entity_id(affiliate_id, "Affiliate", "affiliateId") if affiliate_id is not None else None
    if not ctx.viewer.sees_everyone:
        if owner is not None and owner != ctx.viewer.affiliate_id:
            return []
        owner = ctx.viewer.affiliate_id
    async with robust_connection(ctx) as conn:
        return await service.statements_page(conn, ctx.settings.timezone, month, affiliate_id=owner,
                                             status=status, after=after_id, first=size)


STATEMENT_CURSOR = "statement"
# A closed month's statements are stored: counted in SQL, on the API's reader.
_COUNT_STORED = sql(
    "SELECT count(*) AS n FROM commission_statements WHERE month = :month "
    "AND (CAST(:owner AS bigint) IS NULL OR affiliate_id = :owner) "
    "AND (CAST(:status AS text) IS NULL OR status = :status)"
)


async def statements_connection(
    ctx: Context, month: date, affiliate_id: str | None, status: str | None, first: int | None,
    after: str | None,
) -> Page[service.StatementRecord]:
    """``statements`` as a keyset page with an opaque cursor (by affiliate id); the whole
    list's size is counted only when asked (a closed month's by one COUNT; an open month's
    statements are settled live, so they are settled again to be counted)."""
    month = parse_month(month)
    size = check_first(first, ctx.max_page_size)
    key = decode_cursor(after, STATEMENT_CURSOR, (as_int,))
    after_id = key[0] if key is not None else 0
    owner = parse_entity_id(affiliate_id, "Affiliate", "affiliateId") if affiliate_id is not None else None
    nobody = not ctx.viewer.sees_everyone and owner is not None and owner != ctx.viewer.affiliate_id
    if not ctx.viewer.sees_everyone:
        owner = ctx.viewer.affiliate_id
    tz = ctx.settings.timezone
    found: list[service.StatementRecord] = []
    if not nobody:
        async with robust_connection(ctx) as conn:
            found = await service.statements_page(conn, tz, month, affiliate_id=owner, status=status,
                                                  after=after_id, first=size + 1)

    async def count() -> int:
        if nobody:
            return 0
        async with robust_connection(ctx) as conn:
            closed = await last_closed_month(conn)
            if closed is None or month > closed:
                async with conn.transaction(readonly=True, isolation="repeatable_read"):
                    return sum([1 async for _ in service.month_statements(
                        conn, tz, month, affiliate_id=owner, status=status)])
        rows = await ctx.access.global_state(_COUNT_STORED, month=month, owner=owner, status=status)
        return int(rows[0].n)

    return page_of(found[:size], lambda s: encode_cursor(STATEMENT_CURSOR, s.affiliate_id),
                   len(found) > size, after, count)


async def statement_lines(
    ctx: Context, affiliate_id: int, month: date, is_open: bool
) -> list[Mapping[str, Any]]:
    """A statement's lines; none when the token may not see the statement."""
    if not may_read_money_of(ctx.viewer, affiliate_id):
        return []
    async with robust_connection(ctx) as conn:
        return await service.statement_lines(conn, ctx.settings.timezone, affiliate_id, month,
                                             is_open=is_open)


# ------------------------------------------------------------------ mutations
async def approve_statement(ctx: Context, id: str) -> service.StatementRecord:
    """closed -> approved; its pending validations become approved."""
    affiliate_id, month = parse_statement_id(id)
    async with robust_connection(ctx) as conn:
        return await service.approve_statement(conn, affiliate_id, month, actor(ctx))


async def mark_statement_paid(ctx: Context, id: str, reference: str) -> service.StatementRecord:
    """approved -> paid with the payment's reference; its validations become paid."""
    if not reference.strip():
        raise BadUserInput("reference must not be empty")
    affiliate_id, month = parse_statement_id(id)
    async with robust_connection(ctx) as conn:
        return await service.mark_statement_paid(conn, affiliate_id, month, reference.strip(), actor(ctx))


async def close_month(ctx: Context, month: date) -> service.CloseResult:
    """Freeze the month's statements (and every earlier open month's, oldest first)."""
    month = parse_month(month)
    async with robust_connection(ctx) as conn:
        return await service.close_month(conn, ctx.settings.timezone, month, actor(ctx))


async def reject_cpa_validation(ctx: Context, id: str, reason: str) -> Row:
    """Set cpa_status rejected (a paid one too: a chargeback, recovered in the first open
    month); the open statement adjusts at once.
    Returns the validation as the ledger's loader reads it."""
    validation_id = parse_entity_id(id, "CpaValidation", "id")
    if not reason.strip():
        raise BadUserInput("reason must not be empty")
    async with robust_connection(ctx) as conn:
        await service.reject_validation(conn, validation_id, reason.strip(), actor(ctx))
    row = await ctx.loaders.cpa_validation_by_id.load(validation_id)
    assert row is not None  # it exists, and an admin sees every validation
    return row


async def reject_user_cpa_validations(ctx: Context, user_id: str, reason: str) -> list[Row]:
    """Reject every validation of a referred user not rejected yet (each level's row), as
    ``reject_cpa_validation`` does each; returns those it rejected, by id."""
    user = parse_id(user_id, "userId")
    if not reason.strip():
        raise BadUserInput("reason must not be empty")
    async with robust_connection(ctx) as conn:
        ids = await service.reject_user_validations(conn, user, reason.strip(), actor(ctx))
    rows = await ctx.loaders.cpa_validation_by_id.load_many(ids)
    return [row for row in rows if row is not None]  # all of them: an admin sees every validation
