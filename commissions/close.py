"""Closing months: each month's statements are stored with their lines, frozen from then on,
and with the closed months they settled again (commission_rev_settlements), so a later
correction of those months starts from how they were settled last.

A month closes once it is over (local time), with every earlier open month, oldest first, in
one transaction; closes queue on a table lock, so the one that waited sees what the other
closed. ``close_previous_month`` is the scheduled job.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import asyncpg

from commissions import audit
from commissions.errors import InvalidCommissionInput, WorkflowConflict
from commissions.lines import lines_sql
from commissions.months import add_months, first_open_month, last_closed_month, local_today, month_start
from commissions.open_statements import stream_open_statements
from commissions.payout import RevSettlement
from commissions.plans import PlanBook
from db.engine import connect


@dataclass(frozen=True)
class CloseResult:
    months: list[date]
    statements: int
    lines: int


async def close_month(conn: asyncpg.Connection, tz: str, month: date, actor: str) -> CloseResult:
    """Close ``month`` and every earlier open month, oldest first, in one transaction.

    Each month's statements are stored with their lines, frozen from then on. A month can only
    close once it is over (local time).
    """
    month = month_start(month)
    if month >= month_start(local_today(tz)):
        raise InvalidCommissionInput(f"month: {month:%Y-%m} is not over yet; only past months can close")
    async with conn.transaction(isolation="repeatable_read"):
        # Closes queue here. LOCK takes no snapshot, so the one that waited reads what the
        # other committed (a lock taken by a SELECT would come after its snapshot).
        await conn.execute("LOCK TABLE commission_months IN EXCLUSIVE MODE")
        closed = await last_closed_month(conn)
        if closed is not None and month <= closed:
            raise WorkflowConflict(f"month: {month:%Y-%m} is already closed")
        first = await first_open_month(conn, tz) or month
        book = await PlanBook.load(conn)
        done: list[date] = []
        statements = lines = 0
        current = min(first, month)
        while current <= month:
            s, n = await _close_one(conn, tz, current, book)
            await conn.execute(
                "INSERT INTO commission_months (month, closed_by) VALUES ($1, $2)", current, actor
            )
            statements, lines = statements + s, lines + n
            done.append(current)
            current = add_months(current, 1)
        await audit.record(
            conn,
            actor=actor,
            action="closeMonth",
            entity="commission_month",
            entity_id=f"{month:%Y-%m}",
            before={"last_closed": closed},
            after={"closed": done, "statements": statements, "lines": lines},
        )
    return CloseResult(done, statements, lines)


_STORE_LINES = """
INSERT INTO commission_statement_lines
    (statement_id, affiliate_id, month, for_month, family, kind, validation_id, referred_user_id,
     level, day, amount, description)
SELECT s.id, x.affiliate_id, x.month, x.for_month, x.family, x.kind, x.validation_id,
       x.referred_user_id, x.level, x.day, x.amount, x.description
FROM ({lines}) AS x
JOIN commission_statements s ON s.affiliate_id = x.affiliate_id AND s.month = x.month
WHERE x.month = $3
"""


async def _close_one(conn: asyncpg.Connection, tz: str, month: date, book: PlanBook) -> tuple[int, int]:
    records = []
    resettled: dict[int, tuple[RevSettlement, ...]] = {}
    async for found in stream_open_statements(conn, tz, month, book=book, first_open=month):
        s, f = found.settlement, found.settlement.figures
        if found.rev_settlements:
            resettled[found.affiliate_id] = found.rev_settlements
        records.append(
            (
                found.affiliate_id,
                month,
                "on_hold" if s.on_hold else "closed",
                s.terms.plan_id,
                s.terms.plan_version_id,
                s.terms.negative_carryover,
                s.terms.min_payout,
                f.cpa_validated,
                f.cpa_rejected,
                s.cpa,
                f.rev,
                f.cpa_adjustments,
                f.rev_adjustments,
                f.rev_settlements,
                s.carryover_in,
                s.rev_payable,
                s.carryover_out,
                s.held_in,
                s.payable,
                s.held_out,
            )
        )
    if records:
        await conn.copy_records_to_table(
            "commission_statements",
            records=records,
            columns=[
                "affiliate_id",
                "month",
                "status",
                "plan_id",
                "plan_version_id",
                "negative_carryover",
                "min_payout",
                "cpa_validated",
                "cpa_rejected",
                "cpa",
                "rev",
                "cpa_adjustments",
                "rev_adjustments",
                "rev_settlements",
                "carryover_in",
                "rev_payable",
                "carryover_out",
                "held_in",
                "payable",
                "held_out",
            ],
        )
    status = await conn.execute(_STORE_LINES.format(lines=lines_sql(False)), tz, month, month)
    if resettled:
        await _store_rev_settlements(conn, month, resettled)
    return len(records), int(status.split()[-1])


async def _store_rev_settlements(
    conn: asyncpg.Connection, month: date, resettled: dict[int, tuple[RevSettlement, ...]]
) -> None:
    """The closed months each statement of ``month`` settled again, as its REV settlement
    lines showed them: the next correction of those months starts from these rows."""
    ids = dict(await conn.fetch(
        "SELECT affiliate_id, id FROM commission_statements "
        "WHERE month = $1 AND affiliate_id = ANY($2::bigint[])",
        month, list(resettled)))
    records = [
        (ids[affiliate_id], affiliate_id, month, r.after.month, r.after.negative_carryover,
         r.after.carryover_in, r.after.rev, r.after.rev_paid, r.after.carryover_out,
         r.before.carryover_in, r.before.rev, r.before.rev_paid, r.before.carryover_out,
         r.amount, r.describe())
        for affiliate_id, settlements in resettled.items()
        for r in settlements
    ]
    await conn.copy_records_to_table(
        "commission_rev_settlements", records=records, columns=list(_SETTLEMENT_COLUMNS)
    )


_SETTLEMENT_COLUMNS = (
    "statement_id", "affiliate_id", "month", "for_month", "negative_carryover", "carryover_in", "rev",
    "rev_paid", "carryover_out", "previous_carryover_in", "previous_rev", "previously_paid",
    "previous_carryover_out", "amount", "description",
)


async def close_previous_month(robust_url: str, tz: str, actor: str = "scheduler") -> CloseResult | None:
    """The scheduled job: close last month (and any earlier open one); None if already closed."""
    conn = await connect(robust_url)
    try:
        month = add_months(month_start(local_today(tz)), -1)
        closed = await last_closed_month(conn)
        if closed is not None and closed >= month:
            return None
        return await close_month(conn, tz, month, actor)
    finally:
        await conn.close()
