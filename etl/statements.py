"""Monthly commission statements: what each affiliate is paid for a local month.

A statement's lines are the money dated in its month: one CPA line per validation (rejected
ones listed at zero), one REV line per level and local day with a non-zero daily accrual
(etl.affiliate_level_periods, period_type 'daily'), and, in the first open month only, one
adjustment line per thing that changed in a closed month since it was closed. What a closed
month accounts for is the sum of every stored line dated in it (its own lines plus later
adjustments), by key (the validation, or the level and day); live minus accounted, where
not zero, is the adjustment. So open statements always equal the robust tables, closed ones
never change, and every cent of late data lands exactly once in the next open month.

A correction belongs to the month it corrects: the adjustment's amount is the raw change, and
a REV correction of a month settled with negative carryover off pays what it changes in that
month's max(0, REV) (``with_rev_paid``), so a forgiven negative month is neither paid twice
nor clawed back.

The arithmetic of a month (``settle``) is the same for open and closing statements; see
docs/payouts.md for the rules in plain words.
"""

from __future__ import annotations

import bisect
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import asyncpg

from etl import audit

ZERO = Decimal("0.00")
EPOCH = date(1900, 1, 1)


class StatementError(ValueError):
    """A workflow step that is not allowed; the message is for the client."""


def month_start(day: date) -> date:
    return day.replace(day=1)


def add_months(month: date, n: int) -> date:
    index = month.year * 12 + month.month - 1 + n
    return date(index // 12, index % 12 + 1, 1)


def local_today(tz: str) -> date:
    return datetime.now(ZoneInfo(tz)).date()


# ------------------------------------------------------------------ the arithmetic
@dataclass(frozen=True)
class PayoutTerms:
    """The parts of a plan version that settle a month (the version in force on its last day)."""

    plan_id: int
    plan_version_id: int
    negative_carryover: bool
    min_payout: Decimal


@dataclass(frozen=True)
class MonthFigures:
    cpa_validated: Decimal = ZERO  # every validation dated in the month (= the summaries' cpa)
    cpa_rejected: Decimal = ZERO  # of which rejected: not paid
    rev: Decimal = ZERO  # the month's daily REV accruals (= the summaries' rev)
    cpa_adjustments: Decimal = ZERO
    rev_adjustments: Decimal = ZERO  # REV corrections of closed months as they changed them
    # Of which, corrections of months settled with negative carryover off: their change, and
    # what they pay (per month, max(0, its REV now) - max(0, its REV as settled before)).
    rev_adjustments_off: Decimal = ZERO
    rev_adjustments_off_paid: Decimal = ZERO


@dataclass(frozen=True)
class Carry:
    """What a month hands to the next: the negative REV balance and the held payable."""

    carryover: Decimal = ZERO
    held: Decimal = ZERO


@dataclass(frozen=True)
class Settlement:
    figures: MonthFigures
    terms: PayoutTerms
    cpa: Decimal
    carryover_in: Decimal
    rev_payable: Decimal
    carryover_out: Decimal
    held_in: Decimal
    payable: Decimal
    held_out: Decimal
    on_hold: bool

    @property
    def carry(self) -> Carry:
        return Carry(self.carryover_out, self.held_out)


def settle(figures: MonthFigures, carry_in: Carry, terms: PayoutTerms) -> Settlement:
    """One month of one affiliate.

    REV balance = carried negative balance (only with negative carryover on) + the month's
    REV + the corrections of closed months settled with carryover on. A negative balance pays
    nothing and is carried (on) or forgotten (off: a negative month counts as zero). A
    correction belongs to the month it corrects: for a month settled with carryover off it
    pays what it changes in that month's max(0, REV), added as is (never floored by this
    month's REV). REV paid = max(balance, 0) + those. Payable = CPA (rejected excluded) + CPA
    adjustments + the REV paid + what the previous month held. Below the minimum payout (or
    not positive) the statement is on hold and the whole payable rolls into the next month.
    """
    cpa = figures.cpa_validated - figures.cpa_rejected
    carryover_in = carry_in.carryover if terms.negative_carryover else ZERO
    balance = carryover_in + figures.rev + figures.rev_adjustments - figures.rev_adjustments_off
    rev_payable = max(balance, ZERO) + figures.rev_adjustments_off_paid
    carryover_out = min(balance, ZERO) if terms.negative_carryover else ZERO
    payable = cpa + figures.cpa_adjustments + rev_payable + carry_in.held
    on_hold = payable < terms.min_payout or payable <= ZERO
    return Settlement(
        figures=figures,
        terms=terms,
        cpa=cpa,
        carryover_in=carryover_in,
        rev_payable=rev_payable,
        carryover_out=carryover_out,
        held_in=carry_in.held,
        payable=payable,
        held_out=payable if on_hold else ZERO,
        on_hold=on_hold,
    )


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


# ------------------------------------------------------------------ the lines
def _ids(alias: str, param: int | None, after: int | None = None) -> str:
    """The affiliates a source reads: those in the array $param, those above the keyset $after."""
    ids = "" if param is None else f" AND {alias}.affiliate_id = ANY(${param}::bigint[])"
    return ids + ("" if after is None else f" AND {alias}.affiliate_id > ${after}::bigint")


# Lines dated in months [$2, $3] (local): CPA per validation, REV per level and day.
_MONTH_LINES = """
SELECT v.affiliate_id,
       date_trunc('month', v.validation_date AT TIME ZONE $1)::date AS month,
       date_trunc('month', v.validation_date AT TIME ZONE $1)::date AS for_month,
       'cpa'::text AS family,
       CASE WHEN v.cpa_status = 'rejected' THEN 'cpa_rejected' ELSE 'cpa' END AS kind,
       v.id AS validation_id, v.referred_user_id, v.cpa_level AS level,
       (v.validation_date AT TIME ZONE $1)::date AS day,
       CASE WHEN v.cpa_status = 'rejected' THEN 0 ELSE v.cpa_amount END::numeric(18,2) AS amount,
       v.cpa_amount::numeric(18,2) AS listed_amount, NULL::numeric(18,2) AS amount_paid,
       CASE WHEN v.cpa_status = 'rejected'
            THEN format('CPA level %s for user %s validated %s: rejected (%s), %s not paid',
                        v.cpa_level, v.referred_user_id, (v.validation_date AT TIME ZONE $1)::date,
                        coalesce(r.reason, 'no reason recorded'), v.cpa_amount)
            ELSE format('CPA level %s for user %s validated %s (validation %s)',
                        v.cpa_level, v.referred_user_id, (v.validation_date AT TIME ZONE $1)::date, v.id)
       END AS description
FROM affiliate_cpa_validations v
LEFT JOIN cpa_validation_rejections r ON r.validation_id = v.id
WHERE v.validation_date >= ($2::date::timestamp AT TIME ZONE $1)
  AND v.validation_date < (($3::date + interval '1 month') AT TIME ZONE $1){ids_v}
UNION ALL
SELECT p.affiliate_id, date_trunc('month', p.period_start)::date, date_trunc('month', p.period_start)::date,
       'rev', 'rev', NULL, NULL, p.level, p.period_start, p.rev, p.rev, NULL,
       format('REV level %s on %s: GGR %s (stake %s - win %s)',
              p.level, p.period_start, p.stake - p.win, p.stake, p.win)
FROM etl.affiliate_level_periods p
WHERE p.period_type = 'daily' AND p.rev <> 0
  AND p.period_start >= $2::date AND p.period_start < ($3::date + interval '1 month'){ids_p}
"""

# Negative carryover of the terms in force on the last day of line c's month for its affiliate
# (PlanBook.terms in SQL): the terms of a closed month whose statement was not stored, since
# the affiliate had nothing in it; for the others, the stored statement says how it was settled.
_CARRYOVER_IN_FORCE = """
(SELECT v.negative_carryover FROM commission_plan_versions v
 WHERE v.plan_id = coalesce(
         (SELECT h.plan_id FROM affiliate_plan_history h
          WHERE h.affiliate_id = c.affiliate_id AND h.effective_from <= c.last_day
          ORDER BY h.effective_from DESC LIMIT 1),
         (SELECT p.id FROM commission_plans p WHERE p.is_default))
 ORDER BY v.effective_from > c.last_day,
          CASE WHEN v.effective_from <= c.last_day THEN v.effective_from END DESC NULLS LAST,
          v.effective_from
 LIMIT 1)"""


def with_rev_paid(lines: str) -> str:
    """``lines`` (affiliate_id, month, for_month, kind, level, day, amount, ...) with what each
    REV adjustment of a month settled with negative carryover off pays: the month's REV
    before it (its stored lines of earlier statements, then this statement's corrections of
    it in (day, level) order) and after it, and max(0, after) - max(0, before), which over a
    month's lines adds up to max(0, its REV now) - max(0, its REV as settled). Null on every
    other line. Only stored lines and the plan tables are read, so a stored statement shows
    what it was settled with, whatever came after."""
    return f"""
    SELECT c.*, t.rev_before, (t.rev_before + c.amount)::numeric(18,2) AS rev_after,
           CASE WHEN t.rev_before IS NOT NULL  -- greatest() skips nulls
                THEN (greatest(t.rev_before + c.amount, 0) - greatest(t.rev_before, 0))::numeric(18,2)
           END AS amount_paid
    FROM (
        SELECT c.*, (c.for_month + interval '1 month' - interval '1 day')::date AS last_day,
               sum(c.amount) OVER (PARTITION BY c.affiliate_id, c.month, c.for_month, c.kind
                                   ORDER BY c.day, c.level ROWS UNBOUNDED PRECEDING) - c.amount AS earlier
        FROM ({lines}) AS c
    ) AS c
    LEFT JOIN LATERAL (
        SELECT (coalesce((SELECT sum(l.amount) FROM commission_statement_lines l
                          WHERE l.affiliate_id = c.affiliate_id AND l.for_month = c.for_month
                            AND l.family = 'rev' AND l.month < c.month), 0) + c.earlier)::numeric(18,2)
                   AS rev_before
        WHERE c.kind = 'rev_adjustment'
          AND NOT coalesce((SELECT s.negative_carryover FROM commission_statements s
                            WHERE s.affiliate_id = c.affiliate_id AND s.month = c.for_month),
                           {_CARRYOVER_IN_FORCE})
    ) AS t ON true
    """


# Everything dated before $2 (the first open month) that differs from what stored lines
# account for, by key: the adjustments, all in month $2.
_ADJUSTMENT_KEYS = """
SELECT affiliate_id, $2::date AS month, for_month, family, family || '_adjustment' AS kind, validation_id,
       max(referred_user_id) AS referred_user_id, level, day, sum(amount)::numeric(18,2) AS amount,
       sum(live) AS live, sum(accounted) AS accounted
FROM (
    SELECT v.affiliate_id, date_trunc('month', v.validation_date AT TIME ZONE $1)::date AS for_month,
           'cpa'::text AS family, v.id AS validation_id, v.referred_user_id, v.cpa_level AS level,
           (v.validation_date AT TIME ZONE $1)::date AS day,
           v.cpa_amount AS amount, v.cpa_amount AS live, 0::numeric AS accounted
    FROM affiliate_cpa_validations v
    WHERE v.cpa_status <> 'rejected' AND v.validation_date < ($2::date::timestamp AT TIME ZONE $1){ids_v}
    UNION ALL
    SELECT p.affiliate_id, date_trunc('month', p.period_start)::date, 'rev', NULL, NULL, p.level,
           p.period_start, p.rev, p.rev, 0
    FROM etl.affiliate_level_periods p
    WHERE p.period_type = 'daily' AND p.rev <> 0 AND p.period_start < $2::date{ids_p}
    UNION ALL
    SELECT l.affiliate_id, l.for_month, l.family, l.validation_id, l.referred_user_id, l.level, l.day,
           -l.amount, 0, l.amount
    FROM commission_statement_lines l
    WHERE l.for_month < $2::date{ids_l}
) AS x
GROUP BY affiliate_id, for_month, family, validation_id, level, day
HAVING sum(amount) <> 0
"""

_ADJUSTMENT_LINES = """
SELECT affiliate_id, month, for_month, family, kind, validation_id, referred_user_id, level, day, amount,
       amount AS listed_amount, amount_paid,
       CASE
         WHEN family = 'cpa' AND accounted = 0
           THEN format('corrects %s: validation %s (CPA level %s for user %s, dated %s) '
                       'arrived after the month closed',
                       to_char(for_month, 'YYYY-MM'), validation_id, level, referred_user_id, day)
         WHEN family = 'cpa' AND live = 0
           THEN format('corrects %s: validation %s (CPA level %s for user %s, dated %s) '
                       'was rejected after the month closed',
                       to_char(for_month, 'YYYY-MM'), validation_id, level, referred_user_id, day)
         WHEN family = 'cpa'
           THEN format('corrects %s: validation %s changed from %s to %s',
                       to_char(for_month, 'YYYY-MM'), validation_id, accounted::numeric(18,2),
                       live::numeric(18,2))
         ELSE format('corrects %s: REV level %s on %s was %s when accounted, is %s now (late data)',
                     to_char(for_month, 'YYYY-MM'), level, day, accounted::numeric(18,2), live::numeric(18,2))
       END || CASE
         WHEN amount_paid IS NOT NULL
           THEN format('; %s REV %s -> %s, negative carryover off: pays max(0, %s) - max(0, %s) = %s',
                       to_char(for_month, 'YYYY-MM'), rev_before, rev_after, rev_after, rev_before,
                       amount_paid)
         ELSE ''
       END AS description
FROM (""" + with_rev_paid(_ADJUSTMENT_KEYS) + """) AS a
"""

_LINE_COLUMNS = (
    "affiliate_id, month, for_month, family, kind, validation_id, referred_user_id, level, "
    "day, amount, listed_amount, amount_paid, description"
)


def _fmt(with_ids: bool, after: int | None = None) -> dict[str, str]:
    p = 4 if with_ids else None
    return {"ids_v": _ids("v", p, after), "ids_p": _ids("p", p, after), "ids_l": _ids("l", p, after)}


def month_lines_sql(with_ids: bool) -> str:
    """The lines dated in months [$2, $3]; $1 the zone, $4 the ids."""
    return _MONTH_LINES.format(**_fmt(with_ids))


def lines_sql(with_ids: bool, after: int | None = None) -> str:
    """All lines of months [$2, $3] with the adjustments in $2 (the first open month);
    ``after``: the parameter number of a keyset bound (affiliates above it only)."""
    fmt = _fmt(with_ids, after)
    return f"{_MONTH_LINES.format(**fmt)} UNION ALL {_ADJUSTMENT_LINES.format(**fmt)}"


def figures_sql(with_ids: bool, keyset: bool = False, limited: bool = False) -> str:
    """Per affiliate and month of [$2, $3]: the figures from the lines, with what the last
    closed month ($2 - 1 month) carried, ordered by affiliate and month.

    A page, pushed into every source so a late page reads only the affiliates after it:
    ``keyset`` adds ``affiliate_id > $after``, ``limited`` at most ``$limit`` rows; their
    parameters follow the ids (or $3 without ids), in that order. A full scan has neither
    (no predicate for a generic plan to misjudge)."""
    p = 4 if with_ids else None
    after = (p or 3) + 1 if keyset else None
    page = f" LIMIT ${(after or p or 3) + 1}" if limited else ""
    return f"""
    WITH lines AS ({lines_sql(with_ids, after)}),
    figures AS (
        SELECT affiliate_id, month,
               coalesce(sum(listed_amount) FILTER (WHERE kind IN ('cpa', 'cpa_rejected')), 0)
                   AS cpa_validated,
               coalesce(sum(listed_amount) FILTER (WHERE kind = 'cpa_rejected'), 0) AS cpa_rejected,
               coalesce(sum(amount) FILTER (WHERE kind = 'rev'), 0) AS rev,
               coalesce(sum(amount) FILTER (WHERE kind = 'cpa_adjustment'), 0) AS cpa_adjustments,
               coalesce(sum(amount) FILTER (WHERE kind = 'rev_adjustment'), 0) AS rev_adjustments,
               coalesce(sum(amount) FILTER (WHERE amount_paid IS NOT NULL), 0) AS rev_adjustments_off,
               coalesce(sum(amount_paid), 0) AS rev_adjustments_off_paid
        FROM lines GROUP BY affiliate_id, month
    ), prev AS (
        SELECT s.affiliate_id, $2::date AS month, s.carryover_out, s.held_out
        FROM commission_statements s
        WHERE s.month = ($2::date - interval '1 month')::date
          AND (s.carryover_out <> 0 OR s.held_out <> 0){_ids("s", p, after)}
    )
    SELECT coalesce(f.affiliate_id, prev.affiliate_id) AS affiliate_id,
           coalesce(f.month, prev.month) AS month,
           coalesce(f.cpa_validated, 0)::numeric(18,2) AS cpa_validated,
           coalesce(f.cpa_rejected, 0)::numeric(18,2) AS cpa_rejected,
           coalesce(f.rev, 0)::numeric(18,2) AS rev,
           coalesce(f.cpa_adjustments, 0)::numeric(18,2) AS cpa_adjustments,
           coalesce(f.rev_adjustments, 0)::numeric(18,2) AS rev_adjustments,
           coalesce(f.rev_adjustments_off, 0)::numeric(18,2) AS rev_adjustments_off,
           coalesce(f.rev_adjustments_off_paid, 0)::numeric(18,2) AS rev_adjustments_off_paid,
           coalesce(prev.carryover_out, 0)::numeric(18,2) AS carryover_in,
           coalesce(prev.held_out, 0)::numeric(18,2) AS held_in
    FROM figures f FULL JOIN prev ON prev.affiliate_id = f.affiliate_id AND prev.month = f.month
    ORDER BY 1, 2{page}
    """


# ------------------------------------------------------------------ months
async def last_closed_month(conn: asyncpg.Connection) -> date | None:
    return await conn.fetchval("SELECT max(month) FROM commission_months")


async def first_open_month(
    conn: asyncpg.Connection, tz: str, affiliate_ids: Sequence[int] | None = None
) -> date | None:
    """The month after the last closed one; with none closed, the first month with data."""
    closed = await last_closed_month(conn)
    if closed is not None:
        return add_months(closed, 1)
    ids_v = "" if affiliate_ids is None else " AND affiliate_id = ANY($2::bigint[])"
    args: list[object] = [tz] + ([list(affiliate_ids)] if affiliate_ids is not None else [])
    first = await conn.fetchval(
        f"""SELECT least(
              (SELECT min(validation_date AT TIME ZONE $1)::date FROM affiliate_cpa_validations
               WHERE true{ids_v}),
              (SELECT min(period_start) FROM etl.affiliate_level_periods
               WHERE period_type = 'daily' AND rev <> 0{ids_v}))""",
        *args,
    )
    return month_start(first) if first is not None else None


@dataclass(frozen=True)
class OpenStatement:
    affiliate_id: int
    month: date
    settlement: Settlement


async def stream_open_statements(
    conn: asyncpg.Connection,
    tz: str,
    month: date,
    affiliate_ids: Sequence[int] | None = None,
    *,
    book: PlanBook | None = None,
    first_open: date | None = None,
    every_month: bool = False,
    after: int = 0,
    limit: int | None = None,
) -> AsyncIterator[OpenStatement]:
    """The settled open statements of ``month`` (and, with ``every_month``, of each open month
    before it), one affiliate at a time, ordered by affiliate. Needs a transaction (cursor).
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
    months = _months(first, month)  # the most rows an affiliate has
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
                found = list(_settle_chain(rows, first, month, book, every_month))
                for statement in found:
                    yield statement
                produced += bool(found)
                after = rows[0]["affiliate_id"]
                rows = []
                if limit is not None and produced >= limit:
                    return
            rows.append(row)
        cut = row_limit is not None and read >= row_limit
        # The last affiliate may have been cut short by the row limit unless it has every month.
        if rows and (not cut or len(rows) == months):
            found = list(_settle_chain(rows, first, month, book, every_month))
            for statement in found:
                yield statement
            produced += bool(found)
            after = rows[0]["affiliate_id"]
        if not cut or (limit is not None and produced >= limit):
            return


def _months(first: date, last: date) -> int:
    return (last.year - first.year) * 12 + last.month - first.month + 1


def _settle_chain(
    rows: list[asyncpg.Record], first: date, month: date, book: PlanBook, every_month: bool
) -> Iterable[OpenStatement]:
    """One affiliate's open months from ``first`` to ``month``. A month has a statement when
    it has a line or something is carried into it, exactly what closing it would store."""
    affiliate_id = rows[0]["affiliate_id"]
    by_month = {r["month"]: r for r in rows}
    head = by_month.get(first)
    carry = Carry(head["carryover_in"], head["held_in"]) if head is not None else Carry()
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
                r["rev_adjustments_off"],
                r["rev_adjustments_off_paid"],
            )
            if r is not None
            else MonthFigures()
        )
        exists = r is not None or carry != Carry()
        settlement = settle(figures, carry, book.terms(affiliate_id, current))
        if exists and (every_month or current == month):
            yield OpenStatement(affiliate_id, current, settlement)
        carry = settlement.carry
        current = add_months(current, 1)


async def open_statement(
    conn: asyncpg.Connection, tz: str, affiliate_id: int, month: date
) -> OpenStatement | None:
    async with conn.transaction(readonly=True, isolation="repeatable_read"):
        async for statement in stream_open_statements(conn, tz, month, [affiliate_id]):
            return statement
    return None


async def open_lines(
    conn: asyncpg.Connection, tz: str, affiliate_id: int, month: date
) -> list[asyncpg.Record]:
    """The lines of an open statement (adjustments only in the first open month)."""
    first = await first_open_month(conn, tz, [affiliate_id])
    if first is None or month < first:
        return []
    source = lines_sql(True) if month == first else month_lines_sql(True)
    lines = await conn.fetch(
        f"SELECT {_LINE_COLUMNS} FROM ({source}) AS x WHERE month = $3 "
        "ORDER BY family, kind, day, level, validation_id",
        tz, month, month, [affiliate_id])
    return list(lines)


async def stored_lines(conn: asyncpg.Connection, affiliate_id: int, month: date) -> list[asyncpg.Record]:
    """The lines of a closed statement, with what its REV adjustments paid (``with_rev_paid``)."""
    source = "SELECT * FROM commission_statement_lines WHERE affiliate_id = $1 AND month = $2"
    return list(await conn.fetch(
        f"SELECT * FROM ({with_rev_paid(source)}) AS x ORDER BY family, kind, day, level, validation_id",
        affiliate_id, month))


# ------------------------------------------------------------------ closing
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
        raise StatementError(f"month: {month:%Y-%m} is not over yet; only past months can close")
    async with conn.transaction(isolation="repeatable_read"):
        # Closes queue here. LOCK takes no snapshot, so the one that waited reads what the
        # other committed (a lock taken by a SELECT would come after its snapshot).
        await conn.execute("LOCK TABLE commission_months IN EXCLUSIVE MODE")
        closed = await last_closed_month(conn)
        if closed is not None and month <= closed:
            raise StatementError(f"month: {month:%Y-%m} is already closed")
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
    async for st in stream_open_statements(conn, tz, month, book=book, first_open=month):
        s, f = st.settlement, st.settlement.figures
        records.append(
            (
                st.affiliate_id,
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
                "carryover_in",
                "rev_payable",
                "carryover_out",
                "held_in",
                "payable",
                "held_out",
            ],
        )
    status = await conn.execute(_STORE_LINES.format(lines=lines_sql(False)), tz, month, month)
    return len(records), int(status.split()[-1])


# ------------------------------------------------------------------ the workflow
_STATEMENT = "SELECT * FROM commission_statements WHERE affiliate_id = $1 AND month = $2"


async def _stored(conn: asyncpg.Connection, affiliate_id: int, month: date) -> asyncpg.Record:
    row = await conn.fetchrow(_STATEMENT + " FOR UPDATE", affiliate_id, month)
    if row is None:
        raise StatementError(
            f"id: statement {affiliate_id}:{month:%Y-%m} is not closed "
            "(open months cannot be approved or paid)"
        )
    return row


async def _validations_paid_by(conn: asyncpg.Connection, statement: asyncpg.Record) -> list[int]:
    """The validations a statement pays: its CPA lines and those of the on-hold months rolled
    into it (the consecutive on-hold statements just before it)."""
    return [
        r["validation_id"]
        for r in await conn.fetch(
            """
        WITH RECURSIVE chain AS (
            SELECT $1::bigint AS affiliate_id, $2::date AS month
            UNION ALL
            SELECT s.affiliate_id, s.month FROM commission_statements s
            JOIN chain c ON s.affiliate_id = c.affiliate_id AND s.month = (c.month - interval '1 month')::date
            WHERE s.status = 'on_hold'
        )
        SELECT l.validation_id FROM commission_statement_lines l JOIN chain c
          ON l.affiliate_id = c.affiliate_id AND l.month = c.month
        WHERE l.validation_id IS NOT NULL AND l.kind IN ('cpa', 'cpa_adjustment') AND l.amount > 0
        """,
            statement["affiliate_id"],
            statement["month"],
        )
    ]


def _workflow(row: asyncpg.Record) -> dict[str, object]:
    return {
        k: row[k] for k in ("status", "approved_at", "approved_by", "paid_at", "paid_by", "payment_reference")
    }


async def _advance_paid_validations(
    conn: asyncpg.Connection,
    before: asyncpg.Record,
    after: asyncpg.Record,
    status: str,
    from_statuses: tuple[str, ...],
    actor: str,
    action: str,
) -> None:
    """The workflow step's other half: the validations the statement pays follow it to
    ``status``, and the step is audited (who, when, before and after)."""
    await conn.execute(
        "UPDATE affiliate_cpa_validations SET cpa_status = $2 "
        "WHERE id = ANY($1::bigint[]) AND cpa_status = ANY($3::text[])",
        await _validations_paid_by(conn, before),
        status,
        list(from_statuses),
    )
    await audit.record(
        conn,
        actor=actor,
        action=action,
        entity="commission_statement",
        entity_id=f"{before['affiliate_id']}:{before['month']:%Y-%m}",
        before=_workflow(before),
        after=_workflow(after),
    )


async def approve_statement(
    conn: asyncpg.Connection, affiliate_id: int, month: date, actor: str
) -> asyncpg.Record:
    async with conn.transaction():
        row = await _stored(conn, affiliate_id, month)
        if row["status"] != "closed":
            raise StatementError(f"id: only a closed statement can be approved; this one is {row['status']}")
        after = await conn.fetchrow(
            "UPDATE commission_statements SET status = 'approved', approved_at = now(), approved_by = $2 "
            "WHERE id = $1 RETURNING *",
            row["id"],
            actor,
        )
        await _advance_paid_validations(conn, row, after, "approved", ("pending",), actor, "approveStatement")
        return after


async def mark_statement_paid(
    conn: asyncpg.Connection, affiliate_id: int, month: date, reference: str, actor: str
) -> asyncpg.Record:
    async with conn.transaction():
        row = await _stored(conn, affiliate_id, month)
        if row["status"] != "approved":
            raise StatementError(f"id: only an approved statement can be paid; this one is {row['status']}")
        after = await conn.fetchrow(
            "UPDATE commission_statements SET status = 'paid', paid_at = now(), paid_by = $2, "
            "payment_reference = $3 WHERE id = $1 RETURNING *",
            row["id"],
            actor,
            reference,
        )
        await _advance_paid_validations(
            conn, row, after, "paid", ("pending", "approved"), actor, "markStatementPaid"
        )
        return after


async def reject_validation(
    conn: asyncpg.Connection, validation_id: int, reason: str, actor: str
) -> asyncpg.Record:
    """Set a validation's cpa_status to rejected. Its open statement drops it at once; if its
    month is closed, the next open month gets a negative adjustment naming it."""
    async with conn.transaction():
        row = await conn.fetchrow(
            "SELECT id, affiliate_id, referred_user_id, cpa_level, cpa_amount, cpa_status, validation_date "
            "FROM affiliate_cpa_validations WHERE id = $1 FOR UPDATE",
            validation_id,
        )
        if row is None:
            raise StatementError(f"id: no CPA validation {validation_id}")
        if row["cpa_status"] in ("rejected", "paid"):
            raise StatementError(f"id: validation {validation_id} is already {row['cpa_status']}")
        after = await conn.fetchrow(
            "UPDATE affiliate_cpa_validations SET cpa_status = 'rejected' WHERE id = $1 "
            "RETURNING id, affiliate_id, referred_user_id, cpa_level, cpa_amount, cpa_status, "
            "validation_date",
            validation_id,
        )
        await conn.execute(
            "INSERT INTO cpa_validation_rejections (validation_id, reason, rejected_by) VALUES ($1, $2, $3)",
            validation_id,
            reason,
            actor,
        )
        await audit.record(
            conn,
            actor=actor,
            action="rejectCpaValidation",
            entity="cpa_validation",
            entity_id=validation_id,
            before=dict(row),
            after={**dict(after), "reason": reason},
        )
        return after


async def close_previous_month(robust_url: str, tz: str, actor: str = "scheduler") -> CloseResult | None:
    """The scheduled job: close last month (and any earlier open one); None if already closed."""
    from db.engine import connect

    conn = await connect(robust_url)
    try:
        month = add_months(month_start(local_today(tz)), -1)
        closed = await last_closed_month(conn)
        if closed is not None and closed >= month:
            return None
        return await close_month(conn, tz, month, actor)
    finally:
        await conn.close()
