"""The program's qualification criteria: versioned like plans, each from the start of a local
day, tomorrow at the earliest, never retroactive; every change audited in its own transaction."""

from __future__ import annotations

from datetime import date

import asyncpg

from commissions import audit
from commissions.inputs import QualificationTerms, check_not_retroactive, check_qualification


async def criteria_versions(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """Every version (rows of qualification_criteria_versions), oldest first."""
    return list(await conn.fetch("SELECT * FROM qualification_criteria_versions ORDER BY effective_from"))


async def schedule_criteria(
    conn: asyncpg.Connection, tz: str, effective_from: date, criteria: QualificationTerms, actor: str
) -> asyncpg.Record:
    """New criteria from ``effective_from`` (tomorrow or later): criteria scheduled for a date
    after today may be replaced; those in force never change. Returns the stored row."""
    check_not_retroactive(tz, effective_from)
    checked = check_qualification(criteria)
    async with conn.transaction():
        before = await conn.fetchrow(
            "SELECT * FROM qualification_criteria_versions WHERE effective_from = $1 FOR UPDATE",
            effective_from)
        if before is not None:  # scheduled, not yet in force (effective_from is after today)
            await conn.execute("DELETE FROM qualification_criteria_versions WHERE id = $1", before["id"])
        row = await conn.fetchrow(
            "INSERT INTO qualification_criteria_versions (effective_from, min_deposits, min_stake, "
            "min_active_days, window_days) VALUES ($1, $2, $3, $4, $5) RETURNING *",
            effective_from, checked.min_deposits, checked.min_stake, checked.min_active_days,
            checked.window_days)
        await audit.record(conn, actor=actor, action="scheduleQualificationCriteria",
                           entity="qualification_criteria", entity_id=row["id"], before=before, after=row)
    return row
