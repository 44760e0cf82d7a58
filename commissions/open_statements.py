"""Open statements: computed live from the lines and settled month by month, so they always
equal the robust tables. Closing a month stores exactly what this computes for it.

The figures of each affiliate's open months come from one query, read through a cursor one
affiliate at a time; ``settle`` (commissions.payout) chains each affiliate's months from the
first open one, carrying the negative REV balance and the held payable. For the affiliates
whose closed months' REV changed (and only for them) the same query brings how those months
stand settled, and ``resettle`` settles them again before the first open month.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import asyncpg

from commissions.lines import affiliate_filter, lines_sql, rev_states_sql
from commissions.months import add_months, first_open_month, months_between
from commissions.payout import (
    ZERO,
    Carry,
    MonthFigures,
    RevSettlement,
    RevState,
    Settlement,
    resettle,
    settle,
)
from commissions.plans import PlanBook


def figures_sql(with_ids: bool, keyset: bool = False, limited: bool = False) -> str:
    """Per affiliate and month of [$2, $3]: the figures from the lines, with what the last
    closed month ($2 - 1 month) carried, ordered by affiliate and month. On the first open
    month ($2), for an affiliate whose closed months' REV changed: the months changed and by
    how much (``changed_months``, ``changes``), and how the closed months from the one before
    the first changed stand settled (``rev_states``: ``commissions.lines.rev_states_sql``).

    A page, pushed into every source so a late page reads only the affiliates after it:
    ``keyset`` adds ``affiliate_id > $after``, ``limited`` at most ``$limit`` rows; their
    parameters follow the ids (or $3 without ids), in that order. A full scan has neither
    (no predicate for a generic plan to misjudge)."""
    p = 4 if with_ids else None
    after = (p or 3) + 1 if keyset else None
    page = f" LIMIT ${(after or p or 3) + 1}" if limited else ""
    states = rev_states_sql("f.affiliate_id", "f.changed_months[1]", "$2::date")
    return f"""
    WITH lines AS ({lines_sql(with_ids, after)}),
    keyed AS (
        SELECT affiliate_id, month, for_month, kind, sum(amount) AS amount, sum(listed_amount) AS listed
        FROM lines GROUP BY affiliate_id, month, for_month, kind
    ),
    figures AS (
        SELECT affiliate_id, month,
               coalesce(sum(listed) FILTER (WHERE kind IN ('cpa', 'cpa_rejected')), 0) AS cpa_validated,
               coalesce(sum(listed) FILTER (WHERE kind = 'cpa_rejected'), 0) AS cpa_rejected,
               coalesce(sum(amount) FILTER (WHERE kind = 'rev'), 0) AS rev,
               coalesce(sum(amount) FILTER (WHERE kind = 'cpa_adjustment'), 0) AS cpa_adjustments,
               coalesce(sum(amount) FILTER (WHERE kind = 'rev_adjustment'), 0) AS rev_adjustments,
               array_agg(for_month ORDER BY for_month)
                   FILTER (WHERE kind = 'rev_adjustment' AND amount <> 0) AS changed_months,
               array_agg(amount::numeric(18,2) ORDER BY for_month)
                   FILTER (WHERE kind = 'rev_adjustment' AND amount <> 0) AS changes
        FROM keyed GROUP BY affiliate_id, month
    ), prev AS (
        SELECT s.affiliate_id, $2::date AS month, s.carryover_out, s.held_out
        FROM commission_statements s
        WHERE s.month = ($2::date - interval '1 month')::date
          AND (s.carryover_out <> 0 OR s.held_out <> 0){affiliate_filter("s", p, after)}
    )
    SELECT coalesce(f.affiliate_id, prev.affiliate_id) AS affiliate_id,
           coalesce(f.month, prev.month) AS month,
           coalesce(f.cpa_validated, 0)::numeric(18,2) AS cpa_validated,
           coalesce(f.cpa_rejected, 0)::numeric(18,2) AS cpa_rejected,
           coalesce(f.rev, 0)::numeric(18,2) AS rev,
           coalesce(f.cpa_adjustments, 0)::numeric(18,2) AS cpa_adjustments,
           coalesce(f.rev_adjustments, 0)::numeric(18,2) AS rev_adjustments,
           coalesce(prev.carryover_out, 0)::numeric(18,2) AS carryover_in,
           coalesce(prev.held_out, 0)::numeric(18,2) AS held_in,
           f.changed_months, f.changes,
           CASE WHEN f.changed_months IS NOT NULL THEN {states} END AS rev_states
    FROM figures f FULL JOIN prev ON prev.affiliate_id = f.affiliate_id AND prev.month = f.month
    ORDER BY 1, 2{page}
    """


@dataclass(frozen=True)
class OpenStatement:
    affiliate_id: int
    month: date
    settlement: Settlement
    # The closed months settled again with their corrected REV (first open month only): what
    # its REV settlement lines show and closing stores.
    rev_settlements: tuple[RevSettlement, ...] = ()


async def stream_open_statements(
    conn: asyncpg.Connection,
    tz: str,
    month: date,
    affiliate_ids: Sequence[int] | None = None,
    *,
    book: PlanBook | None = None,
    first_open: date | None = None,
    after: int = 0,
    limit: int | None = None,
) -> AsyncIterator[OpenStatement]:
    """The settled open statements of ``month``, one affiliate at a time, ordered by affiliate.
    Needs a transaction (cursor).
    Months before the first open one are closed: read them from commission_statements.

    A keyset page: affiliates above ``after`` only, at most ``limit`` of them (None: all).
    Both go into the SQL, so a late page never reads the affiliates before it.
    """
    if limit is not None and limit <= 0:
        return
    first = first_open or await first_open_month(conn, tz, affiliate_ids)
    if first is None or month < first:
        return
    book = book or await PlanBook.load(conn, affiliate_ids)
    ids: list[object] = [list(affiliate_ids)] if affiliate_ids is not None else []
    months = months_between(first, month)  # the most rows an affiliate has
    produced = 0
    while True:
        # An affiliate has at most ``months`` rows, so this many rows hold every row of the
        # affiliates still wanted, twice over (room for affiliates with nothing in ``month``);
        # if that is not enough, the next query starts after the last affiliate read whole.
        row_limit = None if limit is None else 2 * (limit - produced) * months
        sql = figures_sql(affiliate_ids is not None, keyset=after > 0, limited=row_limit is not None)
        page = ([after] if after > 0 else []) + ([row_limit] if row_limit is not None else [])
        read = 0
        rows: list[asyncpg.Record] = []
        prefetch = min(row_limit or 2000, 2000)
        async for row in conn.cursor(sql, tz, first, month, *ids, *page, prefetch=prefetch):
            read += 1
            if rows and row["affiliate_id"] != rows[0]["affiliate_id"]:
                found = _settle_chain(rows, first, month, book)
                if found is not None:
                    yield found
                    produced += 1
                after = rows[0]["affiliate_id"]
                rows = []
                if limit is not None and produced >= limit:
                    return
            rows.append(row)
        cut = row_limit is not None and read >= row_limit
        # The last affiliate may have been cut short by the row limit unless it has every month.
        if rows and (not cut or len(rows) == months):
            found = _settle_chain(rows, first, month, book)
            if found is not None:
                yield found
                produced += 1
            after = rows[0]["affiliate_id"]
        if not cut or (limit is not None and produced >= limit):
            return


def _settle_chain(
    rows: list[asyncpg.Record], first: date, month: date, book: PlanBook
) -> OpenStatement | None:
    """One affiliate's open months settled from ``first`` to ``month``, and the statement of
    ``month`` if it has one. A month has a statement when it has a line or something is
    carried into it, exactly what closing it would store.

    When REV of closed months changed, they are settled again first (``_resettled``): the
    first open month pays what that changes and its carried-in balance is what the last
    closed month, settled again, carries out."""
    affiliate_id = rows[0]["affiliate_id"]
    by_month = {r["month"]: r for r in rows}
    head = by_month.get(first)
    carry = Carry(head["carryover_in"], head["held_in"]) if head is not None else Carry()
    settled: tuple[RevSettlement, ...] = ()
    if head is not None and head["rev_states"] is not None:
        settled, carried = _resettled(head)
        carry = Carry(carried, carry.held)
    current = first
    while current <= month:
        r = by_month.get(current)
        figures = (
            MonthFigures(
                r["cpa_validated"],
                r["cpa_rejected"],
                r["rev"],
                r["cpa_adjustments"],
                r["rev_adjustments"],
                sum((s.amount for s in settled), ZERO) if current == first else ZERO,
            )
            if r is not None
            else MonthFigures()
        )
        exists = r is not None or carry != Carry()
        settlement = settle(figures, carry, book.terms(affiliate_id, current))
        if current == month:
            if not exists:
                return None
            return OpenStatement(affiliate_id, current, settlement, settled if current == first else ())
        carry = settlement.carry
        current = add_months(current, 1)
    return None


def _resettled(head: asyncpg.Record) -> tuple[tuple[RevSettlement, ...], Decimal]:
    """The closed months from the first whose REV changed to the last, settled again from how
    they stand (``rev_states``: the month before the first changed, then each of them)."""
    states = head["rev_states"]
    start = head["changed_months"][0]
    changes = dict(zip(head["changed_months"], head["changes"], strict=True))
    carried = states[0][4]  # what the month before the first changed carries out
    months = []
    for i, (rule, carryover_in, rev, rev_paid, carryover_out) in enumerate(states[1:]):
        month = add_months(start, i)
        state = RevState(month, bool(rule), carryover_in, rev, rev_paid, carryover_out)
        months.append((state, changes.get(month, ZERO)))
    return resettle(carried, months)


async def open_statement(
    conn: asyncpg.Connection, tz: str, affiliate_id: int, month: date
) -> OpenStatement | None:
    async with conn.transaction(readonly=True, isolation="repeatable_read"):
        async for statement in stream_open_statements(conn, tz, month, [affiliate_id]):
            return statement
    return None
