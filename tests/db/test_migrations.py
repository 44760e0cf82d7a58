"""The robust schema: migrations up and down, and every name METRICS.md fixes."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from db import migrate
from tests.conftest import _admin, _db_url
from tests.factories import fetch

# METRICS.md's tables and columns, with the type family each must have.
MONEY, COUNT, TEXT, TS, DATE, JSON = (
    "numeric",
    "integer",
    "text",
    "timestamp with time zone",
    "date",
    "jsonb",
)
EXPECTED: dict[str, dict[str, str]] = {
    "affiliates": {
        "affiliate_id": "bigint",
        "name": TEXT,
        "email": TEXT,
        "phone": TEXT,
        "status": TEXT,
        "total_referrals": COUNT,
        "total_validated_referrals": COUNT,
        "total_deposits": MONEY,
        "total_bets": MONEY,
        "total_ggr": MONEY,
        "total_cpa_earned": MONEY,
        "total_rev_earned": MONEY,
    },
    "affiliate_mlm_structure": {
        "affiliate_id": "bigint",
        "total_network_size": COUNT,
        **{
            f"level_{n}_{k}": (COUNT if k == "count" else MONEY)
            for n in range(1, 6)
            for k in ("count", "deposits", "bets", "ggr", "cpa", "rev")
        },
    },
    "affiliate_referrals": {
        "referrer_id": "bigint",
        "referred_id": "bigint",
        "mlm_level": "smallint",
        "referral_date": TS,
        "status": TEXT,
        "validation_date": TS,
        "total_deposits": MONEY,
        "total_bets": MONEY,
        "cpa_amount": MONEY,
    },
    "affiliate_cpa_validations": {
        "affiliate_id": "bigint",
        "referred_user_id": "bigint",
        "validation_date": TS,
        "validation_criteria": JSON,
        "user_deposits": MONEY,
        "user_bets": MONEY,
        "days_active": COUNT,
        "cpa_level": "smallint",
        "cpa_amount": MONEY,
        "cpa_status": TEXT,
    },
    "affiliate_financial_transactions": {
        "affiliate_id": "bigint",
        "user_id": "bigint",
        "mlm_level": "smallint",
        "transaction_type": TEXT,
        "amount": MONEY,
        "transaction_date": TS,
    },
    "affiliate_periodic_summaries": {
        "affiliate_id": "bigint",
        "period_type": TEXT,
        "period_start": DATE,
        "new_referrals": COUNT,
        "validated_referrals": COUNT,
        "total_deposits": MONEY,
        "total_bets": MONEY,
        "total_ggr": MONEY,
        "cpa_earned": MONEY,
        "rev_earned": MONEY,
        "level_breakdown": JSON,
    },
}


async def columns(url: str, table: str) -> dict[str, tuple[str, int | None]]:
    rows = await fetch(
        url,
        "SELECT column_name, data_type, numeric_scale FROM information_schema.columns "
        "WHERE table_schema = 'public' AND table_name = $1",
        table,
    )
    return {r[0]: (r[1], r[2]) for r in rows}


@pytest.mark.parametrize("table", sorted(EXPECTED))
async def test_metrics_tables_and_columns(robust_url: str, table: str) -> None:
    actual = await columns(robust_url, table)
    for column, data_type in EXPECTED[table].items():
        assert column in actual, f"{table}.{column} is missing"
        assert actual[column][0] == data_type, f"{table}.{column} is {actual[column][0]}"
        if data_type == MONEY:
            assert actual[column][1] == 2, f"{table}.{column} must be money with 2 places"


async def test_views_and_partitioning(robust_url: str) -> None:
    dashboard = await columns(robust_url, "v_affiliate_dashboard")
    assert {
        "affiliate_id",
        "name",
        "total_validated_referrals",
        "total_cpa_earned",
        "total_network_size",
        "direct_network",
    } <= set(dashboard)
    ranking = await columns(robust_url, "v_affiliate_ranking")
    assert {"affiliate_id", "name", "total_cpa_earned", "rank_cpa", "rank_referrals"} <= set(
        ranking
    )
    kind = await fetch(
        robust_url,
        "SELECT relkind::text FROM pg_class WHERE relname = 'affiliate_financial_transactions'",
    )
    assert kind[0][0] == "p"  # declaratively partitioned
    money_floats = await fetch(
        robust_url,
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema IN ('public', 'etl') AND data_type IN ('real', 'double precision')",
    )
    assert money_floats == []
    defaults = await fetch(
        robust_url,
        "SELECT cpa_level_1, cpa_level_5, rev_share_level_1, rev_share_level_5 "
        "FROM commission_plan_versions",
    )
    assert [tuple(str(v) for v in r) for r in defaults] == [
        ("50.00", "5.00", "0.250000", "0.020000")
    ]


def test_upgrade_downgrade_upgrade_on_an_empty_database() -> None:
    name = f"fature_m_{uuid.uuid4().hex[:8]}"
    asyncio.run(_admin(f"CREATE DATABASE {name}"))
    url = _db_url(name)
    try:
        migrate.upgrade(url)
        assert asyncio.run(migrate.current_revision(url)) == migrate.head_revision()
        migrate.downgrade(url, "base")
        assert asyncio.run(migrate.current_revision(url)) is None
        left = asyncio.run(
            fetch(
                url,
                "SELECT tablename FROM pg_tables WHERE schemaname IN ('public', 'etl') "
                "AND tablename <> 'alembic_version'",
            )
        )
        assert left == []
        migrate.upgrade(url)
        assert asyncio.run(migrate.current_revision(url)) == migrate.head_revision()
    finally:
        asyncio.run(_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


def test_unknown_revision_is_refused_and_nothing_changes() -> None:
    name = f"fature_m_{uuid.uuid4().hex[:8]}"
    asyncio.run(_admin(f"CREATE DATABASE {name}"))
    url = _db_url(name)
    try:
        asyncio.run(
            fetch(url, "CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY)")
        )
        asyncio.run(fetch(url, "INSERT INTO alembic_version VALUES ('9999_from_the_future')"))
        with pytest.raises(migrate.MigrationError, match="9999_from_the_future"):
            migrate.upgrade(url)
        tables = asyncio.run(
            fetch(url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        )
        assert [t[0] for t in tables] == ["alembic_version"]
    finally:
        asyncio.run(_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
