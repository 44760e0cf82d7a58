"""The robust schema: migrations up and down, and every name METRICS.md fixes.

Migrations are frozen: each carries its own SQL. Revision 0001 once read
``db/sql/robust_schema.sql`` at run time and that file was edited after it shipped, so
production databases were built from two texts; ``robust_schema_edited.sql`` here is a frozen
copy of the edited text, and both must converge to the same catalog at head.
"""

from __future__ import annotations

import ast
import asyncio
import hashlib
import importlib.util
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import pytest
from alembic import command

from db import migrate
from tests.support.databases import admin, db_url
from tests.support.factories import fetch

VERSIONS = migrate.MIGRATIONS / "versions"
EDITED_SQL = Path(__file__).resolve().parent / "robust_schema_edited.sql"
# sha256 of 0001's SQL as it shipped (d900622) and of the edited file (its last edit, e50b491).
ORIGINAL_SHA256 = "68c83d88fb5741328a38510c0f9380ddb476f881eef7caa4113cb85d2b1f9bfa"
EDITED_SHA256 = "41a491639aaf3305cb36e05edf160b228a6baf3d851fad85388902b284f4bb5e"

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
    assert {"affiliate_id", "name", "total_cpa_earned", "rank_cpa", "rank_referrals"} <= set(ranking)
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
        "SELECT cpa_level_1, cpa_level_5, rev_share_level_1, rev_share_level_5 FROM commission_plan_versions",
    )
    assert [tuple(str(v) for v in r) for r in defaults] == [("50.00", "5.00", "0.250000", "0.020000")]


def test_upgrade_downgrade_upgrade_on_an_empty_database() -> None:
    name = f"fature_m_{uuid.uuid4().hex[:8]}"
    asyncio.run(admin(f"CREATE DATABASE {name}"))
    url = db_url(name)
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
        asyncio.run(admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


def test_unknown_revision_is_refused_and_nothing_changes() -> None:
    name = f"fature_m_{uuid.uuid4().hex[:8]}"
    asyncio.run(admin(f"CREATE DATABASE {name}"))
    url = db_url(name)
    try:
        asyncio.run(fetch(url, "CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY)"))
        asyncio.run(fetch(url, "INSERT INTO alembic_version VALUES ('9999_from_the_future')"))
        with pytest.raises(migrate.MigrationError, match="9999_from_the_future"):
            migrate.upgrade(url)
        tables = asyncio.run(fetch(url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))
        assert [t[0] for t in tables] == ["alembic_version"]
    finally:
        asyncio.run(admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


# ---------------------------------------------------------------- frozen migrations

# What a monthly partition looks like when the ETL creates it (etl/transactions.py).
PARTITION = (
    "CREATE TABLE affiliate_financial_transactions_p202611 PARTITION OF "
    "affiliate_financial_transactions FOR VALUES FROM ('2026-11-01') TO ('2026-12-01')"
)

# The catalog of schemas public and etl, by section, with no OIDs in it: two databases with
# equal dumps have the same schema.
CATALOG: dict[str, str] = {
    "schemas": """
        SELECT nspname FROM pg_namespace
        WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema'""",
    "extensions": "SELECT extname FROM pg_extension",
    "relations": """
        SELECT n.nspname, c.relname, c.relkind::text, c.relpersistence::text,
               c.reloptions::text, c.relacl::text, c.relrowsecurity, c.relispartition,
               pg_get_expr(c.relpartbound, c.oid),
               CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) END,
               (SELECT pn.nspname || '.' || p.relname FROM pg_inherits i
                JOIN pg_class p ON p.oid = i.inhparent
                JOIN pg_namespace pn ON pn.oid = p.relnamespace
                WHERE i.inhrelid = c.oid),
               obj_description(c.oid, 'pg_class')
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname IN ('public', 'etl')""",
    "columns": """
        SELECT n.nspname, c.relname,
               row_number() OVER (PARTITION BY c.oid ORDER BY a.attnum), a.attname,
               format_type(a.atttypid, a.atttypmod), a.attnotnull,
               pg_get_expr(d.adbin, d.adrelid), a.attidentity::text, a.attgenerated::text,
               co.collname, col_description(c.oid, a.attnum)
        FROM pg_attribute a
        JOIN pg_class c ON c.oid = a.attrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        LEFT JOIN pg_collation co ON co.oid = a.attcollation AND a.attcollation <> 0
        WHERE n.nspname IN ('public', 'etl') AND a.attnum > 0 AND NOT a.attisdropped
          AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'c')""",
    "indexes": """
        SELECT n.nspname, t.relname, c.relname, pg_get_indexdef(i.indexrelid),
               i.indisunique, i.indisprimary, i.indisvalid,
               (SELECT pc.relname FROM pg_inherits h JOIN pg_class pc ON pc.oid = h.inhparent
                WHERE h.inhrelid = c.oid)
        FROM pg_index i
        JOIN pg_class c ON c.oid = i.indexrelid
        JOIN pg_class t ON t.oid = i.indrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname IN ('public', 'etl')""",
    "constraints": """
        SELECT n.nspname, coalesce(t.relname, ''), c.conname, c.contype::text,
               pg_get_constraintdef(c.oid), c.condeferrable, c.condeferred, c.convalidated,
               c.conislocal, c.coninhcount
        FROM pg_constraint c
        JOIN pg_namespace n ON n.oid = c.connamespace
        LEFT JOIN pg_class t ON t.oid = c.conrelid
        WHERE n.nspname IN ('public', 'etl')""",
    "views": """
        SELECT n.nspname, c.relname, pg_get_viewdef(c.oid, true)
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname IN ('public', 'etl') AND c.relkind IN ('v', 'm')""",
    "sequences": """
        SELECT n.nspname, c.relname, format_type(s.seqtypid, NULL), s.seqstart,
               s.seqincrement, s.seqmax, s.seqmin, s.seqcache, s.seqcycle,
               (SELECT t.relname || '.' || a.attname FROM pg_depend d
                JOIN pg_class t ON t.oid = d.refobjid
                JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
                WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                  AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i'))
        FROM pg_sequence s
        JOIN pg_class c ON c.oid = s.seqrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname IN ('public', 'etl')""",
    "functions": """
        SELECT n.nspname, p.proname, p.prokind::text, pg_get_function_identity_arguments(p.oid),
               CASE WHEN p.prokind IN ('f', 'p') THEN pg_get_functiondef(p.oid) END
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname IN ('public', 'etl')""",
    "triggers": """
        SELECT t.tgrelid::regclass::text, t.tgname, pg_get_triggerdef(t.oid, true),
               t.tgenabled::text
        FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname IN ('public', 'etl') AND NOT t.tgisinternal""",
    "types": """
        SELECT n.nspname, t.typname, t.typtype::text, format_type(t.typbasetype, t.typtypmod),
               t.typnotnull,
               (SELECT string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder)
                FROM pg_enum e WHERE e.enumtypid = t.oid)
        FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
        WHERE n.nspname IN ('public', 'etl') AND t.typtype IN ('d', 'e', 'r', 'm')""",
    "rules": """
        SELECT schemaname, tablename, rulename, definition FROM pg_rules
        WHERE schemaname IN ('public', 'etl')""",
    "policies": """
        SELECT schemaname, tablename, policyname, cmd, qual, with_check FROM pg_policies
        WHERE schemaname IN ('public', 'etl')""",
}


async def catalog(url: str) -> dict[str, list[tuple[object, ...]]]:
    conn = await asyncpg.connect(url)
    try:
        # pg_get_expr prints partition bounds in the session's time zone.
        await conn.execute("SET TimeZone = 'UTC'")
        return {
            section: sorted((tuple(row) for row in await conn.fetch(sql)), key=repr)
            for section, sql in CATALOG.items()
        }
    finally:
        await conn.close()


def assert_same_catalog(
    left: dict[str, list[tuple[object, ...]]], right: dict[str, list[tuple[object, ...]]]
) -> None:
    # Section by section, only the rows that differ: a readable failure.
    for section in CATALOG:
        only_left = [row for row in left[section] if row not in right[section]]
        only_right = [row for row in right[section] if row not in left[section]]
        assert (section, only_left, only_right) == (section, [], [])


@contextmanager
def empty_database() -> Iterator[str]:
    name = f"fature_m_{uuid.uuid4().hex[:8]}"
    asyncio.run(admin(f"CREATE DATABASE {name}"))
    try:
        yield db_url(name)
    finally:
        asyncio.run(admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


async def execute(url: str, sql: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def build_from_edited_text(url: str) -> None:
    """What 0001 did while it read the edited file: that text, recorded as revision 0001."""
    asyncio.run(execute(url, EDITED_SQL.read_text()))
    command.stamp(migrate.alembic_config(url), "0001")


def migration_module(path: Path) -> object:
    spec = importlib.util.spec_from_file_location(f"migration_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_head_schema_is_the_same_whichever_text_built_0001() -> None:
    with empty_database() as fresh, empty_database() as edited, empty_database() as original:
        # Today's path: empty to head, then the ETL adds its first partition.
        migrate.upgrade(fresh)
        asyncio.run(execute(fresh, PARTITION))

        # Production databases, each with a partition and rows before 0007 runs.
        build_from_edited_text(edited)
        migrate.upgrade(edited, "0006")
        migrate.upgrade(original, "0006")
        for url in (edited, original):
            asyncio.run(
                execute(
                    url,
                    f"""{PARTITION};
                    INSERT INTO affiliate_financial_transactions
                        (affiliate_id, user_id, mlm_level, transaction_type, amount, transaction_date)
                    VALUES (1, 2, 1, 'bet', 10.00, '2026-11-05');
                    INSERT INTO etl.user_daily VALUES (2, '2026-11-05', 0, 0, 0, 0, 10, 0, 1);
                    INSERT INTO etl.mirror_loaded VALUES (now());""",
                )
            )
        at_0006 = asyncio.run(catalog(original))
        migrate.upgrade(edited)
        migrate.upgrade(original)

        expected = asyncio.run(catalog(fresh))
        assert at_0006 != expected  # the dump sees what 0007 changes
        assert_same_catalog(asyncio.run(catalog(edited)), expected)
        assert_same_catalog(asyncio.run(catalog(original)), expected)

        # The mirrors of a database that lacked first_bet_at are rebuilt by the next cycle
        # (a full load); the others are trusted as they are.
        loaded = "SELECT count(*) FROM etl.mirror_loaded"
        assert asyncio.run(fetch(original, loaded))[0][0] == 0
        assert asyncio.run(fetch(edited, loaded))[0][0] == 1
        rows = "SELECT count(*) FROM affiliate_financial_transactions"
        assert asyncio.run(fetch(original, rows))[0][0] == 1


def test_downgrade_to_base_and_upgrade_again_gives_the_same_schema() -> None:
    with empty_database() as url:
        migrate.upgrade(url)
        head = asyncio.run(catalog(url))
        migrate.downgrade(url, "0007")
        at_0007 = asyncio.run(catalog(url))
        assert at_0007 != head  # 0008's queue and triggers are gone, the old assignments table back
        # 0007 has nothing to undo (see its downgrade): 0006 is the shape the code expected.
        migrate.downgrade(url, "0006")
        assert_same_catalog(asyncio.run(catalog(url)), at_0007)
        migrate.downgrade(url, "base")
        left = asyncio.run(catalog(url))
        assert {r[1] for r in left["relations"]} == {"alembic_version", "alembic_version_pkc"}
        assert left["functions"] == [] and left["sequences"] == []
        assert ("etl",) not in left["schemas"]
        migrate.upgrade(url)
        assert asyncio.run(migrate.current_revision(url)) == migrate.head_revision()
        assert_same_catalog(asyncio.run(catalog(url)), head)


def test_migrations_carry_their_own_sql() -> None:
    """No migration reads a file or imports application code: each is a frozen snapshot."""
    allowed = {"alembic", "sqlalchemy", "__future__"}
    for path in sorted(VERSIONS.glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                modules = [node.module or ""]
            else:
                modules = []
            for module in modules:
                assert module.split(".")[0] in allowed, f"{path.name} imports {module}"
            if isinstance(node, ast.Name):
                assert node.id not in {"open", "Path", "__file__"}, f"{path.name} uses {node.id}"
            if isinstance(node, ast.Attribute):
                assert node.attr not in {"read_text", "read_bytes"}, f"{path.name} reads a file"
    # 0001 is the text it shipped with; the edited text is history, not a moving target.
    sql = migration_module(VERSIONS / "0001_initial.py").SQL  # type: ignore[attr-defined]
    assert hashlib.sha256(sql.encode()).hexdigest() == ORIGINAL_SHA256
    assert hashlib.sha256(EDITED_SQL.read_bytes()).hexdigest() == EDITED_SHA256
