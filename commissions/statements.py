"""Reading statements: one affiliate's month, or a month's statements by affiliate.

A closed month's statements are stored (``commission_statements``, frozen); an open month's
are computed live (``commissions.open_statements``). Both read as a ``StatementRecord``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg

from commissions.lines import open_lines, stored_lines, stored_rev_settlements
from commissions.months import add_months, last_closed_month, local_today, month_start
from commissions.open_statements import OpenStatement, open_statement, stream_open_statements

STORED = "SELECT * FROM commission_statements WHERE affiliate_id = $1 AND month = $2"
_PREFETCH = 5000  # rows per fetch of a closed month's cursor


def _stored_of_month(keyset: bool, limited: bool) -> str:
    """A closed month's statements by affiliate: $1 the month, $2 one affiliate and $3 one
    status (null: all); then, when given, the keyset bound and the page size, in that order."""
    sql = ("SELECT * FROM commission_statements WHERE month = $1 "
           "AND ($2::bigint IS NULL OR affiliate_id = $2) AND ($3::text IS NULL OR status = $3)")
    n = 3
    if keyset:
        n += 1
        sql += f" AND affiliate_id > ${n}"
    sql += " ORDER BY affiliate_id"
    return sql + (f" LIMIT ${n + 1}" if limited else "")


@dataclass(frozen=True)
class StatementRecord:
    """One affiliate's statement of a local month; ``status``: open, closed, on_hold,
    approved or paid. Money: cpa + cpa_adjustments + rev_payable + held_in = payable, and
    rev_payable = max(0, carryover_in + rev) + rev_settlements (what the closed months settled
    again pay; statements closed before those existed may count corrections of carryover-on
    months in their own balance: their own-month row in commission_rev_settlements says so)."""

    affiliate_id: int
    month: date
    status: str
    plan_id: int
    plan_version_id: int  # in force on the month's last day
    negative_carryover: bool
    min_payout: Decimal
    cpa_validated: Decimal
    cpa_rejected: Decimal
    cpa: Decimal
    rev: Decimal
    cpa_adjustments: Decimal
    rev_adjustments: Decimal
    rev_settlements: Decimal
    carryover_in: Decimal
    rev_payable: Decimal
    carryover_out: Decimal
    held_in: Decimal
    payable: Decimal
    held_out: Decimal
    below_min_payout: bool
    closed_at: datetime | None = None
    approved_at: datetime | None = None
    paid_at: datetime | None = None
    payment_reference: str | None = None

    @property
    def adjustments(self) -> Decimal:
        return self.cpa_adjustments + self.rev_adjustments

    @classmethod
    def from_stored(cls, row: asyncpg.Record) -> StatementRecord:
        return cls(
            affiliate_id=row["affiliate_id"], month=row["month"], status=row["status"],
            plan_id=row["plan_id"], plan_version_id=row["plan_version_id"],
            negative_carryover=row["negative_carryover"], min_payout=row["min_payout"],
            cpa_validated=row["cpa_validated"], cpa_rejected=row["cpa_rejected"], cpa=row["cpa"],
            rev=row["rev"], cpa_adjustments=row["cpa_adjustments"], rev_adjustments=row["rev_adjustments"],
            rev_settlements=row["rev_settlements"], carryover_in=row["carryover_in"],
            rev_payable=row["rev_payable"],
            carryover_out=row["carryover_out"], held_in=row["held_in"], payable=row["payable"],
            held_out=row["held_out"],
            below_min_payout=row["payable"] < row["min_payout"] or row["payable"] <= 0,
            closed_at=row["closed_at"], approved_at=row["approved_at"], paid_at=row["paid_at"],
            payment_reference=row["payment_reference"],
        )

    @classmethod
    def from_open(cls, found: OpenStatement) -> StatementRecord:
        s, f, t = found.settlement, found.settlement.figures, found.settlement.terms
        return cls(
            affiliate_id=found.affiliate_id, month=found.month, status="open",
            plan_id=t.plan_id, plan_version_id=t.plan_version_id,
            negative_carryover=t.negative_carryover, min_payout=t.min_payout,
            cpa_validated=f.cpa_validated, cpa_rejected=f.cpa_rejected, cpa=s.cpa, rev=f.rev,
            cpa_adjustments=f.cpa_adjustments, rev_adjustments=f.rev_adjustments,
            rev_settlements=f.rev_settlements, carryover_in=s.carryover_in, rev_payable=s.rev_payable,
            carryover_out=s.carryover_out,
            held_in=s.held_in, payable=s.payable, held_out=s.held_out, below_min_payout=s.on_hold,
        )


async def statement(
    conn: asyncpg.Connection, tz: str, affiliate_id: int, month: date
) -> StatementRecord | None:
    """The affiliate's statement of ``month``; None when it has none (nothing was due) or the
    month has not started."""
    row = await conn.fetchrow(STORED, affiliate_id, month)
    if row is not None:
        return StatementRecord.from_stored(row)
    closed = await last_closed_month(conn)
    if closed is not None and month <= closed:
        return None  # a closed month without a statement for this affiliate: nothing was due
    if month > month_start(local_today(tz)):
        return None
    found = await open_statement(conn, tz, affiliate_id, month)
    return StatementRecord.from_open(found) if found is not None else None


async def month_statements(
    conn: asyncpg.Connection,
    tz: str,
    month: date,
    *,
    affiliate_id: int | None = None,
    status: str | None = None,
    after: int | None = None,
    limit: int | None = None,
) -> AsyncIterator[StatementRecord]:
    """The statements of ``month`` ordered by affiliate: of one affiliate or all, of one
    status or all, affiliates above ``after`` (None: every one), at most ``limit`` (None: all).
    Read through cursors, so it runs inside the caller's transaction."""
    closed = await last_closed_month(conn)
    if closed is not None and month <= closed:
        page = ([after] if after is not None else []) + ([limit] if limit is not None else [])
        sql = _stored_of_month(after is not None, limit is not None)
        prefetch = _PREFETCH if limit is None else max(1, min(limit, _PREFETCH))
        async for row in conn.cursor(sql, month, affiliate_id, status, *page, prefetch=prefetch):
            yield StatementRecord.from_stored(row)
        return
    if status not in (None, "open") or month > month_start(local_today(tz)):
        return
    ids = [affiliate_id] if affiliate_id is not None else None
    async for found in stream_open_statements(conn, tz, month, ids, after=after or 0, limit=limit):
        yield StatementRecord.from_open(found)


async def statements_page(
    conn: asyncpg.Connection,
    tz: str,
    month: date,
    *,
    affiliate_id: int | None,
    status: str | None,
    after: int,
    first: int,
) -> list[StatementRecord]:
    """A page of ``month_statements``, read in one snapshot."""
    async with conn.transaction(readonly=True, isolation="repeatable_read"):
        return [s async for s in month_statements(conn, tz, month, affiliate_id=affiliate_id, status=status,
                                                  after=after, limit=first)]


async def statement_lines(
    conn: asyncpg.Connection, tz: str, affiliate_id: int, month: date, *, is_open: bool
) -> list[Mapping[str, Any]]:
    """A statement's lines by family, kind, day and level (kind, amount, amount_paid, level,
    day, validation_id, referred_user_id, for_month, description, ...), then its REV
    settlement lines in month order (kind rev_settlement: one per closed month it settles
    again; amount and amount_paid what that pays, level null, day the month's last day)."""
    if not is_open:
        lines: list[Mapping[str, Any]] = list(await stored_lines(conn, affiliate_id, month))
        return lines + [
            _settlement_line(r["affiliate_id"], r["month"], r["for_month"], r["amount"], r["description"])
            for r in await stored_rev_settlements(conn, affiliate_id, month)
        ]
    lines = list(await open_lines(conn, tz, affiliate_id, month))
    found = await open_statement(conn, tz, affiliate_id, month)
    settled = found.rev_settlements if found is not None else ()
    return lines + [
        _settlement_line(affiliate_id, month, r.after.month, r.amount, r.describe()) for r in settled
    ]


def _settlement_line(
    affiliate_id: int, month: date, for_month: date, amount: Decimal, description: str
) -> dict[str, Any]:
    return {
        "affiliate_id": affiliate_id, "month": month, "for_month": for_month, "family": "rev",
        "kind": "rev_settlement", "validation_id": None, "referred_user_id": None, "level": None,
        "day": add_months(for_month, 1) - timedelta(days=1), "amount": amount, "listed_amount": amount,
        "amount_paid": amount, "description": description,
    }
