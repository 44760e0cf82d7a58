"""The calendar of statements: local months (business time zone), and which are closed
(``commission_months``: closed once, oldest first) or still open."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import asyncpg

from db import clock


def month_start(day: date) -> date:
    return day.replace(day=1)


def add_months(month: date, n: int) -> date:
    index = month.year * 12 + month.month - 1 + n
    return date(index // 12, index % 12 + 1, 1)


def months_between(first: date, last: date) -> int:
    """How many months ``first`` to ``last`` span, both included."""
    return (last.year - first.year) * 12 + last.month - first.month + 1


def local_today(tz: str) -> date:
    """The business date now (db.clock: the system clock or FATURE_NOW)."""
    return clock.local_today(tz)


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
