"""The demo operation data: the contract's tables, deterministic, believable, live."""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from demo.generator import (
    CONTRACT_PATH,
    OPERATION_TABLES,
    DemoDataExists,
    SeedReport,
    seed_operation_database,
)
from demo.plan import EXAMPLE_AFFILIATE_ID, ID_LAYOUT, SCALE_FACTORS, build_plan, id_space
from demo.simulate import simulate
from tests.support.databases import ADMIN_URL, admin, db_url

SHARED_CONTRACT = Path("/work/shared/spec/operation_db.sql")
NOW = datetime(2025, 6, 30, 15, 0, tzinfo=UTC)

ScratchDatabase = Callable[[], Awaitable[str]]


@pytest.fixture
async def scratch_db() -> AsyncIterator[ScratchDatabase]:
    """A factory of uniquely named empty databases, all dropped at the end of the test."""
    created: list[str] = []

    async def make() -> str:
        name = f"fature_demo_{uuid.uuid4().hex[:10]}"
        await admin(f"CREATE DATABASE {name}")
        created.append(name)
        return db_url(name)

    yield make
    for name in created:
        await admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


async def _fetch(url: str, sql: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


async def _val(url: str, sql: str, *args: object) -> object:
    return (await _fetch(url, sql, *args))[0][0]


async def _table_md5s(url: str, columns: str = "t") -> dict[str, str]:
    """md5 of each table's rows in id order (`columns`: what of a row `t` to hash)."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("SET TimeZone = 'UTC'")
        return {
            table: await conn.fetchval(
                f"SELECT md5(string_agg(({columns})::text, '|' ORDER BY id)) FROM {table} t"
            )
            for table in OPERATION_TABLES
        }
    finally:
        await conn.close()


async def _columns(url: str, schema: str) -> list[tuple[object, ...]]:
    rows = await _fetch(
        url,
        "SELECT table_name, ordinal_position, column_name, data_type, numeric_precision,"
        "       numeric_scale, is_nullable, column_default"
        " FROM information_schema.columns WHERE table_schema = $1 AND table_name = ANY($2)"
        " ORDER BY table_name, ordinal_position",
        schema,
        list(OPERATION_TABLES),
    )
    return [tuple(r) for r in rows]


async def _definitions(url: str, schema: str) -> list[str]:
    """Every index and constraint of the tables in `schema`, schema names left out."""
    rows = await _fetch(
        url,
        "SELECT replace(indexdef, $1 || '.', '') FROM pg_indexes WHERE schemaname = $1"
        " UNION ALL SELECT c.conname || ' ' || pg_get_constraintdef(c.oid)"
        " FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace"
        " WHERE n.nspname = $1 ORDER BY 1",
        schema,
    )
    return [r[0] for r in rows]


# ---------------------------------------------------------------------------- the contract
async def test_tables_match_the_contract_column_for_column(scratch_db: ScratchDatabase) -> None:
    # given a tiny demo operator, and the contract file run into a schema of its own
    url = await scratch_db()
    await seed_operation_database(url, "tiny", now=NOW)
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("CREATE SCHEMA contract; SET search_path = contract")
        await conn.execute(CONTRACT_PATH.read_text(encoding="utf-8"))
    finally:
        await conn.close()

    # then columns (names, types, nullability, defaults), keys, indexes and checks agree
    generated = await _columns(url, "public")
    assert {row[0] for row in generated} == set(OPERATION_TABLES)
    assert generated == await _columns(url, "contract")
    assert await _definitions(url, "public") == await _definitions(url, "contract")


def test_contract_file_is_the_shared_spec() -> None:
    if not SHARED_CONTRACT.exists():
        pytest.skip("the shared spec is not on this machine")
    assert CONTRACT_PATH.read_bytes() == SHARED_CONTRACT.read_bytes()


# ---------------------------------------------------------------------------- determinism
async def test_same_seed_same_rows_other_seed_other_rows(scratch_db: ScratchDatabase) -> None:
    first, again, other = await scratch_db(), await scratch_db(), await scratch_db()
    for url, seed in ((first, 7), (again, 7), (other, 8)):
        await seed_operation_database(url, "tiny", seed=seed, now=NOW)

    first_md5s = await _table_md5s(first)
    assert first_md5s == await _table_md5s(again)
    other_md5s = await _table_md5s(other)
    assert all(first_md5s[t] != other_md5s[t] for t in OPERATION_TABLES)


async def test_now_only_moves_timestamps(scratch_db: ScratchDatabase) -> None:
    early, late = await scratch_db(), await scratch_db()
    await seed_operation_database(early, "tiny", seed=3, now=NOW)
    await seed_operation_database(late, "tiny", seed=3, now=NOW + timedelta(days=40, hours=5))

    # everything but the timestamps is identical
    without_time = "to_jsonb(t) - 'criado_em' - 'atualizado_em'"
    assert await _table_md5s(early, without_time) == await _table_md5s(late, without_time)
    latest = await _val(late, "SELECT max(criado_em) FROM casino_bets_v")
    assert NOW + timedelta(days=39) < latest <= NOW + timedelta(days=40, hours=5)


# ---------------------------------------------------------------------------- believability
async def test_a_tiny_operator_is_believable(scratch_db: ScratchDatabase) -> None:
    url = await scratch_db()
    progress: list[tuple[str, int, int]] = []
    report = await seed_operation_database(url, "tiny", now=NOW, progress=lambda *step: progress.append(step))
    plan = build_plan("tiny", 42)
    conn = await asyncpg.connect(url)
    try:
        # the report counts what is there, and progress went step by step to the end
        assert isinstance(report, SeedReport) and report.elapsed_s < 5
        for table in OPERATION_TABLES:
            assert report.rows[table] == await conn.fetchval(f"SELECT count(*) FROM {table}") > 0
        assert report.rows["cadastro"] == plan.users
        assert [done for _, done, _ in progress] == list(range(len(progress)))
        assert progress[-1] == ("done", len(progress) - 1, len(progress) - 1)

        # every CHECK of the contract holds (re-checked, not only trusted)
        checks = await conn.fetch(
            "SELECT conrelid::regclass::text AS tbl, pg_get_constraintdef(oid) AS def"
            " FROM pg_constraint WHERE contype = 'c' AND conrelid = ANY($1::regclass[])",
            list(OPERATION_TABLES),
        )
        assert len(checks) == 7
        for check in checks:
            condition = check["def"].removeprefix("CHECK ")
            assert await conn.fetchval(f"SELECT count(*) FROM {check['tbl']} WHERE NOT {condition}") == 0

        await conn.execute(USABLE_EDGES_AND_UPLINES)
        # affiliates (METRICS.md: afiliado, or the referrer of someone) are the plan's number
        affiliates = await conn.fetchval(
            "SELECT count(*) FROM (SELECT id FROM cadastro WHERE afiliado"
            " UNION SELECT afiliado_id FROM usable_edge) a"
        )
        assert affiliates == plan.affiliates > 0
        # a real forest: depth >= 3 exists, pairs and the biggest network as planned
        assert await conn.fetchval("SELECT max(lvl) FROM upline") >= 3
        assert await conn.fetchval("SELECT count(*) FROM upline") == plan.referral_pairs
        biggest = await conn.fetchrow(
            "SELECT count(*) AS total, count(*) FILTER (WHERE lvl = 1) AS l1,"
            "       count(*) FILTER (WHERE lvl = 2) AS l2"
            " FROM upline GROUP BY ancestor ORDER BY 1 DESC LIMIT 1"
        )
        assert biggest["total"] >= sum(plan.biggest_network)
        # a referral happens after the referrer signed up
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM tracked t JOIN cadastro a ON a.id = t.afiliado_id"
                " WHERE t.criado_em <= a.criado_em"
            )
            == 0
        )

        # money: mostly approved deposits, RTP near 96%, bets clustered on active days
        approved = await conn.fetchval("SELECT avg((status = 'aprovado')::int) FROM depositos")
        assert 0.75 <= approved <= 0.93
        rtp = await conn.fetchval("SELECT sum(valor_premio) / sum(valor_aposta) FROM casino_bets_v")
        assert 0.90 <= rtp <= 1.02
        assert await conn.fetchval("SELECT avg((valor_premio = 0)::int) FROM casino_bets_v") > 0.5
        bets, user_days = await conn.fetchrow(
            "SELECT count(*), count(DISTINCT (user_id,"
            " (criado_em AT TIME ZONE 'America/Sao_Paulo')::date)) FROM casino_bets_v"
        )
        assert bets / user_days >= 8
        withdrawals = await conn.fetchval("SELECT count(*) FROM saque")
        assert 0.08 <= withdrawals / report.rows["depositos"] <= 0.30

        # time: one year up to now, updates after creation, some of them later
        for table in OPERATION_TABLES:
            low, high = await conn.fetchrow(f"SELECT min(criado_em), max(criado_em) FROM {table}")
            assert NOW - timedelta(days=366) <= low and high <= NOW
        for table in ("cadastro", "tracked", "depositos", "saque"):
            assert await conn.fetchval(
                f"SELECT bool_and(atualizado_em >= criado_em) AND bool_or(atualizado_em > criado_em)"
                f" AND max(atualizado_em) <= $1 FROM {table}",
                NOW,
            )

        # ids: unique, sparse and unrelated to time
        for table in OPERATION_TABLES:
            count, span, in_time_order = await conn.fetchrow(
                f"SELECT count(*), max(id) - min(id) + 1,"
                f" count(*) FILTER (WHERE id > prev) FROM (SELECT id,"
                f" lag(id) OVER (ORDER BY criado_em, id) AS prev FROM {table}) t"
            )
            assert span > count and in_time_order < 0.75 * count

        # and a little mess, as in the real source
        assert await conn.fetchval("SELECT count(*) FROM tracked WHERE user_id = afiliado_id") >= 1
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM tracked t WHERE NOT EXISTS"
                " (SELECT 1 FROM cadastro c WHERE c.id = t.afiliado_id)"
            )
            >= 1
        )
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM depositos d WHERE NOT EXISTS"
                " (SELECT 1 FROM cadastro c WHERE c.id = d.user_id)"
            )
            >= 1
        )
        # Brazilian people
        sample = await conn.fetch("SELECT nome, email, telefone FROM cadastro ORDER BY id LIMIT 20")
        assert all(" " in r["nome"] for r in sample)
        assert all(r["telefone"] is None or r["telefone"].startswith("+55 ") for r in sample)
    finally:
        await conn.close()


USABLE_EDGES_AND_UPLINES = """
CREATE TEMP TABLE usable_edge AS
SELECT t.user_id, t.afiliado_id FROM tracked t
JOIN cadastro u ON u.id = t.user_id JOIN cadastro a ON a.id = t.afiliado_id
WHERE t.user_id <> t.afiliado_id;
CREATE TEMP TABLE upline AS
WITH RECURSIVE walk (user_id, ancestor, lvl, path) AS (
    SELECT user_id, afiliado_id, 1, ARRAY[user_id, afiliado_id] FROM usable_edge
    UNION ALL
    SELECT w.user_id, e.afiliado_id, w.lvl + 1, w.path || e.afiliado_id
    FROM walk w JOIN usable_edge e ON e.user_id = w.ancestor
    WHERE w.lvl < 5 AND NOT e.afiliado_id = ANY (w.path)
)
SELECT user_id, ancestor, lvl FROM walk;
"""


def test_the_seed_scale_plan_is_the_strategy_operator() -> None:
    plan = build_plan("seed", 42)
    assert plan.affiliates == 48_261 and plan.users == 300_000
    assert plan.referral_pairs == 614_944
    assert plan.biggest_network[:2] == (757, 3478) and sum(plan.biggest_network) == 95_558
    assert build_plan("small", 42).users == 15_000
    with pytest.raises(ValueError):
        build_plan("huge", 42)


def test_the_seed3_plan_is_three_strategy_operators() -> None:
    # the ETL's scaling bench (issue 17): every headline number three times the seed scale's
    seed, seed3 = build_plan("seed", 42), build_plan("seed3", 42)
    assert seed3.users == 3 * seed.users == 900_000
    assert seed3.affiliates == 3 * seed.affiliates == 144_783
    assert seed3.referral_pairs == 3 * seed.referral_pairs == 1_844_832
    assert seed3.biggest_network == tuple(3 * n for n in seed.biggest_network)
    # the forest's shape is kept: the same levels, every count an integer near 3x
    assert [(c.tree, c.level) for c in seed3.categories] == [(c.tree, c.level) for c in seed.categories]
    for big, small in zip(seed3.categories, seed.categories, strict=True):
        assert abs(big.users - 3 * small.users) <= 2 and big.candidates <= big.users
    assert sum(c.users for c in seed3.categories) == seed3.users
    assert sum(c.candidates for c in seed3.categories) == seed3.affiliates
    assert seed3.orphan_referrals == 75 and seed3.orphan_deposits == 30


# Rows per user at seed scale (demo "seed": 1,635,618 deposits, 294,929 withdrawals and
# 11,451,865 bets for 300,000 users), with half again as margin.
_ROWS_PER_USER = {"cadastro": 1.01, "tracked": 1.0, "depositos": 8.2, "saque": 1.5, "casino_bets_v": 57.3}


@pytest.mark.parametrize("scale", list(SCALE_FACTORS))
def test_the_id_spaces_of_every_scale_stay_apart(scale: str) -> None:
    # each table's ids lie in [base, base + modulus * gap): below the next table's base
    plan = build_plan(scale, 42)
    ends = []
    for table, (base, _) in sorted(ID_LAYOUT.items(), key=lambda item: item[1][0]):
        space = id_space(42, table, math.ceil(plan.users * _ROWS_PER_USER[table]) + 100)
        ends.append((base, base + space.modulus * space.gap))
    assert all(end <= next_base for (_, end), (next_base, _) in zip(ends[:-1], ends[1:], strict=True))
    assert ends[-1][1] < 2**63
    # and the example affiliate's fixed id is clear of every other table's ids
    assert ends[0][0] <= EXAMPLE_AFFILIATE_ID < ends[1][0]


# ---------------------------------------------------------------------------- refusal
async def test_refuses_existing_data_unless_forced(scratch_db: ScratchDatabase) -> None:
    url = await scratch_db()
    await seed_operation_database(url, "tiny", seed=1, now=NOW)
    before = await _table_md5s(url)

    with pytest.raises(DemoDataExists) as refused:
        await seed_operation_database(url, "tiny", seed=2, now=NOW)
    assert "cadastro" in refused.value.tables and "force" in str(refused.value)
    assert await _table_md5s(url) == before  # untouched

    report = await seed_operation_database(url, "tiny", seed=2, force=True, now=NOW)
    after = await _table_md5s(url)
    assert all(after[t] != before[t] for t in OPERATION_TABLES)
    assert report.rows["cadastro"] == await _val(url, "SELECT count(*) FROM cadastro")


async def test_empty_operation_tables_are_simply_replaced(scratch_db: ScratchDatabase) -> None:
    url = await scratch_db()
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(CONTRACT_PATH.read_text(encoding="utf-8"))
    finally:
        await conn.close()
    report = await seed_operation_database(url, "tiny", now=NOW)
    assert report.rows["casino_bets_v"] > 0


async def test_creates_a_missing_database(scratch_db: ScratchDatabase) -> None:
    url = await scratch_db()
    await admin(f"DROP DATABASE {url.rpartition('/')[2]}")  # the fixture still drops it
    report = await seed_operation_database(url.replace("postgresql://", "postgresql+asyncpg://"), "tiny")
    assert report.rows["cadastro"] == build_plan("tiny", 42).users


# ---------------------------------------------------------------------------- simulate
async def test_simulate_adds_rows_and_updates(scratch_db: ScratchDatabase) -> None:
    url = await scratch_db()
    await seed_operation_database(url, "tiny", now=datetime.now(UTC))
    counts = "SELECT " + ", ".join(f"(SELECT count(*) FROM {t}) AS {t}" for t in OPERATION_TABLES)
    before = await _fetch(url, counts)
    started = await _val(url, "SELECT now()")
    ticks: list[dict[str, object]] = []

    await simulate(url, rate=40, duration_seconds=2.0, seed=5, on_tick=ticks.append)

    after = await _fetch(url, counts)
    assert 2 <= len(ticks) <= 3
    assert after[0]["casino_bets_v"] > before[0]["casino_bets_v"]
    assert after[0]["depositos"] > before[0]["depositos"]
    assert sum(t["events"] for t in ticks) >= 70  # type: ignore[misc]
    updated = await _val(
        url,
        "SELECT (SELECT count(*) FROM depositos WHERE atualizado_em >= $1 AND criado_em < $1)"
        " + (SELECT count(*) FROM saque WHERE atualizado_em >= $1 AND criado_em < $1)"
        " + (SELECT count(*) FROM cadastro WHERE atualizado_em >= $1 AND criado_em < $1)",
        started,
    )
    assert updated > 0
    new_bets = await _val(url, "SELECT count(*) FROM casino_bets_v WHERE criado_em >= $1", started)
    assert new_bets == after[0]["casino_bets_v"] - before[0]["casino_bets_v"]


async def test_simulate_stops_cleanly_when_cancelled(scratch_db: ScratchDatabase) -> None:
    url = await scratch_db()
    await seed_operation_database(url, "tiny")
    ticks: list[dict[str, object]] = []
    task = asyncio.create_task(simulate(url, rate=20, seed=1, on_tick=ticks.append))
    await asyncio.sleep(1.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert ticks
    # no connection left behind
    name = url.rpartition("/")[2]
    assert await _val(ADMIN_URL, "SELECT count(*) FROM pg_stat_activity WHERE datname = $1", name) == 0
