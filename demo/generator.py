"""Fill an operation database with a believable demo operator, in bulk, inside PostgreSQL.

The tables come from ``db/sql/operation_db.sql`` (the contract); the rows from
``demo/network.sql`` (people and referrals) and ``demo/activity.sql`` (deposits,
withdrawals, bets), run as set-based statements in one transaction. The same
(scale, seed) always gives the same rows; ``now`` only moves the timestamps.
"""

from __future__ import annotations

import functools
import math
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from demo import names
from demo.plan import EXAMPLE_AFFILIATE_ID, IdSpace, SeedPlan, build_plan, id_space

OPERATION_TABLES: tuple[str, ...] = ("cadastro", "tracked", "depositos", "saque", "casino_bets_v")
BUSINESS_TIMEZONE = "America/Sao_Paulo"
CONTRACT_PATH = Path(__file__).resolve().parent.parent / "db" / "sql" / "operation_db.sql"
_SQL_DIR = Path(__file__).resolve().parent

# Bets: 33% of them win; a win pays stake * scale * (-ln q)^shape for a uniform q,
# whose mean is scale * Gamma(1 + shape): chosen so the overall RTP is 96%.
RTP = 0.96
WIN_SHARE = 0.33
MULTIPLIER_SHAPE = 0.7
BET_CHUNK_SESSIONS = 80_000

Progress = Callable[[str, int, int], None]


class DemoDataExists(RuntimeError):
    """The operation tables already hold rows; seeding again needs ``force=True``."""

    def __init__(self, tables: list[str]) -> None:
        self.tables = tables
        super().__init__(
            f"the operation database already holds data ({', '.join(tables)}); "
            "refusing to replace it. Pass force=True (--force) to drop and recreate the "
            "operation tables."
        )


@dataclass(frozen=True)
class SeedReport:
    """What a seeding run made: rows per operation table and how long it took."""

    scale: str
    seed: int
    rows: dict[str, int]
    elapsed_s: float

    @property
    def elapsed_seconds(self) -> float:
        return self.elapsed_s


def load_sections(path: Path) -> dict[str, str]:
    """The ``-- name: <section>`` blocks of an SQL file, in order."""
    sections: dict[str, str] = {}
    for block in re.split(r"^-- name: ", path.read_text(encoding="utf-8"), flags=re.M)[1:]:
        name, _, body = block.partition("\n")
        sections[name.strip()] = body
    return sections


def asyncpg_url(url: str) -> str:
    """`url` without an SQLAlchemy driver suffix (postgresql+asyncpg:// -> postgresql://)."""
    return re.sub(r"^postgres(ql)?\+\w+://", "postgresql://", url)


async def connect_creating(url: str) -> asyncpg.Connection:
    """Connect to `url`, creating its database first when it does not exist."""
    url = asyncpg_url(url)
    try:
        return await asyncpg.connect(url)
    except asyncpg.InvalidCatalogNameError:
        parts = urlsplit(url)
        database = parts.path.lstrip("/")
        admin = await asyncpg.connect(urlunsplit(parts._replace(path="/postgres")))
        try:
            await admin.execute(f'CREATE DATABASE "{database.replace(chr(34), chr(34) * 2)}"')
        except asyncpg.DuplicateDatabaseError:
            pass  # somebody else created it meanwhile
        finally:
            await admin.close()
        return await asyncpg.connect(url)


async def seed_operation_database(
    url: str,
    scale: str = "small",
    seed: int = 42,
    force: bool = False,
    progress: Progress | None = None,
    now: datetime | None = None,
) -> SeedReport:
    """Create the operation tables at `url` and fill them with a demo operator.

    `scale` is "tiny" (a few hundred users, for tests), "small" (~5% of the strategy's
    operator, the default demo), "seed" (the strategy's 48,261 affiliates, ~300,000
    users, >10M bets) or "seed3" (three times that, ~34M bets: the ETL's scaling bench).
    Raises `DemoDataExists` if the tables already hold rows, unless
    `force` (then they are dropped and recreated). `progress(step, done, total)` is
    called before each step and once at the end. Everything happens in one transaction:
    an interrupted run leaves the database as it was.
    """
    if not -(2**63) <= seed < 2**63:
        raise ValueError("seed must fit in a bigint")
    plan = build_plan(scale, seed)
    anchor = _utc(now or datetime.now(UTC))
    clock = time.perf_counter()
    conn = await connect_creating(url)
    try:
        # Session-local knobs for a bulk load: big sorts and index builds in memory.
        await conn.execute(
            "SET temp_buffers = '512MB'; SET work_mem = '256MB';"
            " SET maintenance_work_mem = '1GB'; SET synchronous_commit = off"
        )
        async with conn.transaction():
            rows = await _Seeder(conn, plan, anchor, force, progress).run()
    finally:
        await conn.close()
    return SeedReport(scale, seed, rows, round(time.perf_counter() - clock, 3))


class _Seeder:
    """One seeding run: renders the SQL sections and runs them in order."""

    def __init__(
        self, conn: asyncpg.Connection, plan: SeedPlan, now: datetime, force: bool, progress: Progress | None
    ) -> None:
        self.conn = conn
        self.plan = plan
        self.force = force
        self.progress = progress
        self.network = load_sections(_SQL_DIR / "network.sql")
        self.activity = load_sections(_SQL_DIR / "activity.sql")
        self.values: dict[str, Any] = _base_values(plan, now)
        self.rows: dict[str, int] = dict.fromkeys(OPERATION_TABLES, 0)
        self.index_ddl: list[str] = []  # the keys and indexes dropped for the bulk load
        self.done = 0
        self.total = 0

    async def run(self) -> dict[str, int]:
        fixed: list[tuple[str, Callable[[], Awaitable[None]]]] = [
            ("schema", self._schema),
            ("users", self._users),
            ("referrals", lambda: self._run(self.network, "referrals")),
            ("cadastro", lambda: self._insert(self.network, "cadastro", "cadastro")),
            ("tracked", lambda: self._insert(self.network, "tracked", "tracked")),
            ("sessions", self._sessions),
            ("depositos", self._deposits),
            ("saque", lambda: self._insert(self.activity, "saque", "saque")),
        ]
        # Bets are most of the work: a step per chunk of sessions keeps progress moving.
        self.total = len(fixed) + 2 + max(1, math.ceil(self.plan.users * 2.6 / BET_CHUNK_SESSIONS))
        for name, step in fixed:
            await self._step(name, step)
        sessions = self.values["session_count"]
        chunks = [
            (lo, min(lo + BET_CHUNK_SESSIONS - 1, sessions))
            for lo in range(1, sessions + 1, BET_CHUNK_SESSIONS)
        ] or [(1, 0)]
        self.total = self.done + len(chunks) + 2
        bets = self._render(self.activity["bets"])
        for lo, hi in chunks:
            await self._step("casino_bets_v", functools.partial(self._bets, bets, lo, hi))
        await self._step("indexes", self._restore_indexes)
        await self._step("analyze", self._analyze)
        if self.progress:
            self.progress("done", self.total, self.total)
        return self.rows

    async def _step(self, name: str, step: Callable[[], Awaitable[None]]) -> None:
        if self.progress:
            self.progress(name, self.done, self.total)
        await step()
        self.done += 1

    def _render(self, sql: str) -> str:
        return sql.format_map(self.values)

    async def _run(self, sections: dict[str, str], *section_names: str) -> None:
        for name in section_names:
            await self.conn.execute(self._render(sections[name]))

    async def _insert(self, sections: dict[str, str], name: str, table: str) -> None:
        status = await self.conn.execute(self._render(sections[name]))
        self.rows[table] += int(status.rsplit(" ", 1)[1])

    async def _schema(self) -> None:
        await _replace_operation_tables(self.conn, self.force)
        self.index_ddl = await _drop_indexes(self.conn)

    async def _users(self) -> None:
        await self._run(self.network, "functions")
        await self.conn.executemany(
            "INSERT INTO category VALUES ($1, $2, $3, $4, $5)",
            [(c.tree, c.level, c.users, c.candidates, c.founder_weight) for c in self.plan.categories],
        )
        await self._run(self.network, "members")

    async def _sessions(self) -> None:
        await self._run(self.activity, "sessions")
        totals = await self.conn.fetchrow(self.activity["totals"])
        plan, v = self.plan, self.values
        v["session_count"] = totals["sessions"]
        v["deposit_count"] = totals["deposits"]
        v["deposit_id"] = id_space(plan.seed, "depositos", totals["deposits"] + plan.orphan_deposits).sql(
            "d.ordinal", 102
        )
        v["withdrawal_id"] = id_space(plan.seed, "saque", totals["withdrawals"]).sql("w.ordinal", 103)
        v["bet_id"] = id_space(plan.seed, "casino_bets_v", totals["bets"]).sql("b.ordinal", 104)

    async def _deposits(self) -> None:
        await self._insert(self.activity, "depositos", "depositos")
        await self._insert(self.activity, "orphan_deposits", "depositos")

    async def _bets(self, sql: str, lo: int, hi: int) -> None:
        status = await self.conn.execute(sql, lo, hi)
        self.rows["casino_bets_v"] += int(status.rsplit(" ", 1)[1])

    async def _restore_indexes(self) -> None:
        await self._run(self.activity, "cleanup")
        for ddl in self.index_ddl:
            await self.conn.execute(ddl)

    async def _analyze(self) -> None:
        await self.conn.execute("ANALYZE " + ", ".join(OPERATION_TABLES))


def _base_values(plan: SeedPlan, now: datetime) -> dict[str, Any]:
    """The placeholders every section may use, known before any row exists."""
    cadastro = id_space(
        plan.seed, "cadastro", plan.users + 2 * (plan.orphan_referrals + plan.orphan_deposits) + 10
    )
    tracked = id_space(plan.seed, "tracked", plan.users)
    now_sql = f"'{now.isoformat()}'::timestamptz"
    return {
        "seed": plan.seed,
        "now": now_sql,
        "start": f"({now_sql} - interval '365 days')",
        "tz": BUSINESS_TIMEZONE,
        "users": plan.users,
        "player_share": plan.player_share,
        "orphan_referrals": plan.orphan_referrals,
        "self_referrals": plan.self_referrals,
        "orphan_deposits": plan.orphan_deposits,
        "example_id": EXAMPLE_AFFILIATE_ID,
        "member_id": cadastro.sql("o.idx", 100),
        "first_member_id": cadastro.sql("1", 100),
        "future_referrer_id": _unused_user_id(cadastro, f"{plan.users} + 2 * o.rank"),
        "future_depositor_id": _unused_user_id(
            cadastro, f"{plan.users} + 2 * {plan.orphan_referrals} + 2 * d.r"
        ),
        "tracked_id": tracked.sql("r.ordinal", 101),
        "first_names": names.sql_text_array(names.FIRST_NAMES),
        "n_first_names": len(names.FIRST_NAMES),
        "second_names": names.sql_text_array(names.SECOND_NAMES),
        "n_second_names": len(names.SECOND_NAMES),
        "surnames": names.sql_text_array(names.SURNAMES),
        "n_surnames": len(names.SURNAMES),
        "email_domains": names.sql_text_array(names.EMAIL_DOMAINS),
        "n_email_domains": len(names.EMAIL_DOMAINS),
        "area_codes": names.sql_numeric_array(names.AREA_CODES),
        "n_area_codes": len(names.AREA_CODES),
        "games": names.sql_text_array(names.GAMES),
        "n_games": len(names.GAMES),
        "stakes": names.sql_numeric_array(names.STAKES),
        "max_stake_level": len(names.STAKES) - 1,
        "deposit_amounts": names.sql_numeric_array(names.DEPOSITS),
        "max_deposit_level": len(names.DEPOSITS) - 1,
        "win_share": WIN_SHARE,
        "multiplier_shape": MULTIPLIER_SHAPE,
        "multiplier_scale": repr(RTP / WIN_SHARE / math.gamma(1 + MULTIPLIER_SHAPE)),
    }


def _utc(moment: datetime) -> datetime:
    """`moment` as an aware UTC datetime (a naive one is taken to be UTC already)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _unused_user_id(space: IdSpace, ordinal: str) -> str:
    """The id of a user that has not arrived: never the example's, nor the one it took."""
    taken = f"({EXAMPLE_AFFILIATE_ID}, {space.sql('1', 100)})"
    primary, spare = space.sql(ordinal, 100), space.sql(f"({ordinal}) + 1", 100)
    return f"(CASE WHEN {primary} IN {taken} THEN {spare} ELSE {primary} END)"


async def _replace_operation_tables(conn: asyncpg.Connection, force: bool) -> None:
    """Refuse to touch tables that hold rows (unless `force`); recreate from the contract."""
    existing = await conn.fetch(
        "SELECT t.name, c.relkind FROM unnest($1::text[]) AS t(name)"
        " JOIN pg_class c ON c.oid = to_regclass(t.name)",
        list(OPERATION_TABLES),
    )
    holding = [
        r["name"] for r in existing if await conn.fetchval(f'SELECT EXISTS (SELECT 1 FROM "{r["name"]}")')
    ]
    if holding and not force:
        raise DemoDataExists(holding)
    kinds = {"v": "VIEW", "m": "MATERIALIZED VIEW", "f": "FOREIGN TABLE"}
    for r in existing:
        await conn.execute(f'DROP {kinds.get(r["relkind"], "TABLE")} "{r["name"]}"')
    await conn.execute(CONTRACT_PATH.read_text(encoding="utf-8"))


async def _drop_indexes(conn: asyncpg.Connection) -> list[str]:
    """Drop the tables' keys and indexes for the bulk load; return the DDL to rebuild them."""
    tables = list(OPERATION_TABLES)
    constraints = await conn.fetch(
        "SELECT format('ALTER TABLE %s DROP CONSTRAINT %I', conrelid::regclass, conname) AS drop,"
        "       format('ALTER TABLE %s ADD CONSTRAINT %I %s', conrelid::regclass, conname,"
        "              pg_get_constraintdef(oid)) AS create"
        " FROM pg_constraint WHERE conrelid = ANY($1::regclass[]) AND contype IN ('p', 'u')"
        " ORDER BY conrelid::regclass::text, conname",
        tables,
    )
    indexes = await conn.fetch(
        "SELECT format('DROP INDEX %s', indexrelid::regclass) AS drop,"
        "       pg_get_indexdef(indexrelid) AS create"
        " FROM pg_index i WHERE indrelid = ANY($1::regclass[])"
        "   AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)"
        " ORDER BY indexrelid::regclass::text",
        tables,
    )
    for r in [*constraints, *indexes]:
        await conn.execute(r["drop"])
    return [r["create"] for r in [*constraints, *indexes]]
