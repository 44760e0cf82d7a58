"""A fresh full recompute of the same history: a new robust database holding the same
configuration history (plans, their versions, the criteria, the assignments), built by one full
ETL run from the same operation database. What the invariant "when the ETL runs never matters"
compares a database against."""

from __future__ import annotations

import asyncpg

from db.settings import Settings
from etl.sync import run_cycle
from tests.support.databases import new_robust_database

# Parents first: each table's rows keep their ids, so plan ids and version ids compare.
CONFIG_TABLES = (
    "commission_plans",
    "commission_plan_versions",
    "qualification_criteria_versions",
    "affiliate_plan_history",
)

LEDGER = """
SELECT affiliate_id, referred_user_id, cpa_level, validation_date, cpa_amount, plan_version_id,
       user_deposits, user_bets, days_active
FROM affiliate_cpa_validations ORDER BY referred_user_id, cpa_level
"""


async def copy_configuration(source_url: str, target_url: str) -> None:
    """The configuration history of ``source_url`` into ``target_url`` (replacing its own)."""
    source, target = await asyncpg.connect(source_url), await asyncpg.connect(target_url)
    try:
        async with target.transaction():
            await target.execute(f"TRUNCATE {', '.join(CONFIG_TABLES)} CASCADE")
            for table in CONFIG_TABLES:
                rows = await source.fetch(f"SELECT * FROM {table}")
                if rows:
                    await target.copy_records_to_table(table, records=[tuple(r) for r in rows],
                                                       columns=list(rows[0].keys()))
            for table in ("commission_plans", "commission_plan_versions", "qualification_criteria_versions"):
                await target.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"coalesce((SELECT max(id) FROM {table}), 1))")
            await target.execute("DELETE FROM etl.config_changes")  # a full load applies everything
    finally:
        await source.close()
        await target.close()


async def fresh_recompute(settings: Settings, template: str, robust_url: str, operation_url: str) -> str:
    """A new robust database (from ``template``) with ``robust_url``'s configuration history,
    built by one full ETL run over ``operation_url``; its URL (the caller drops it)."""
    url = await new_robust_database(template)
    await copy_configuration(robust_url, url)
    result = await run_cycle(settings, url, operation_url, full=True)
    assert result.status == "success"
    return url


async def ledger(url: str) -> list[tuple]:
    """The validations as the invariant compares them (no ids, no timestamps)."""
    conn = await asyncpg.connect(url)
    try:
        return [tuple(r) for r in await conn.fetch(LEDGER)]
    finally:
        await conn.close()
