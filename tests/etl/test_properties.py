"""Property tests of the ETL against an independent oracle of METRICS.md (tests/etl/oracle.py).

Random small operation histories (5-15 users, chains deeper than 5 levels, self-referrals,
cycles, referrers that arrive later, status changes, moved referrals, bets around local
midnight and at the same instant as deposits) are loaded into a real operation database:

a. one ETL run from empty equals the oracle, table by table, to the cent;
b. the same history applied in chronological batches, a cycle after each, ends in the state
   of a full recompute on that database, and equals the oracle given the ledger the
   incremental runs could write (validations are written once, to the upline of that run);
c. a cycle with no source change changes nothing;
d. invariant 3: summaries add up to affiliate_mlm_structure, which adds up to affiliates;
e. a failure injected after any step leaves every robust table as it was, and the next
   run is correct.

Hypothesis tests are synchronous and make their own databases (function-scoped async
fixtures cannot be shared across examples).
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from db.settings import Settings
from etl.sync import STEPS, InjectedFailure, run_cycle
from tests.etl import oracle
from tests.support.databases import OPERATION_SQL, admin, db_url

# ---------------------------------------------------------------------------- databases


@pytest.fixture(scope="session")
def operation_template() -> str:
    name = f"fature_otpl_{uuid.uuid4().hex[:8]}"

    async def make() -> None:
        await admin(f"CREATE DATABASE {name}")
        conn = await asyncpg.connect(db_url(name))
        try:
            await conn.execute(OPERATION_SQL.read_text())
        finally:
            await conn.close()

    asyncio.run(make())
    yield name
    asyncio.run(admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


class Databases:
    """One robust and one operation database, reset to their templates between examples
    (creating databases costs ~0.3 s each; a reset costs a few ms)."""

    def __init__(self, robust_template: str, operation_template: str) -> None:
        self.robust_name = f"fature_pr_{uuid.uuid4().hex[:10]}"
        self.operation_name = f"fature_po_{uuid.uuid4().hex[:10]}"
        self.robust_url = db_url(self.robust_name)
        self.operation_url = db_url(self.operation_name)
        self.robust_template = robust_template
        self.operation_template = operation_template
        self.tables: list[str] = []
        self.seed: dict[str, list[tuple]] = {}
        self.sequences: list[tuple[str, int | None, int]] = []

    async def create(self) -> None:
        await admin(f"CREATE DATABASE {self.robust_name} TEMPLATE {self.robust_template}")
        await admin(f"CREATE DATABASE {self.operation_name} TEMPLATE {self.operation_template}")
        conn = await asyncpg.connect(self.robust_url)
        try:
            for schema, name in await conn.fetch(
                "SELECT n.nspname, c.relname FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p') "
                "AND NOT c.relispartition AND n.nspname IN ('public', 'etl') "
                "AND c.relname <> 'alembic_version'"
            ):
                full = f'{schema}."{name}"'
                self.tables.append(full)
                rows = await conn.fetch(f"SELECT * FROM {full}")
                if rows:
                    self.seed[full] = [tuple(r) for r in rows]
            self.sequences = [
                (f'{r["schemaname"]}."{r["sequencename"]}"', r["last_value"], r["start_value"])
                for r in await conn.fetch("SELECT * FROM pg_sequences")
            ]
        finally:
            await conn.close()

    async def reset(self) -> None:
        conn = await asyncpg.connect(self.robust_url)
        try:
            async with conn.transaction():
                await conn.execute(f"TRUNCATE {', '.join(self.tables)}")
                for full, rows in self.seed.items():
                    schema, name = full.split(".", 1)
                    await conn.copy_records_to_table(name.strip('"'), schema_name=schema, records=rows)
                for seq, last, start in self.sequences:
                    if last is None:
                        await conn.execute("SELECT setval($1::regclass, $2, false)", seq, start)
                    else:
                        await conn.execute("SELECT setval($1::regclass, $2, true)", seq, last)
        finally:
            await conn.close()
        conn = await asyncpg.connect(self.operation_url)
        try:
            await conn.execute("TRUNCATE cadastro, tracked, depositos, saque, casino_bets_v")
        finally:
            await conn.close()

    async def drop(self) -> None:
        await admin(f"DROP DATABASE IF EXISTS {self.robust_name} WITH (FORCE)")
        await admin(f"DROP DATABASE IF EXISTS {self.operation_name} WITH (FORCE)")


@pytest.fixture
def dbs(robust_template: str, operation_template: str) -> Databases:
    d = Databases(robust_template, operation_template)
    asyncio.run(d.create())
    yield d
    asyncio.run(d.drop())


def make_settings(robust_url: str, operation_url: str) -> Settings:
    return Settings(database_url=robust_url, operation_database_url=operation_url,
                    etl_scheduler_enabled=False, _env_file=None)


# Columns that may legitimately differ between equal states.
_VOLATILE = {"updated_at", "created_at", "first_seen_at", "last_seen_at", "assigned_at", "loaded_at"}
_SURROGATE_ID_TABLES = {"public.affiliate_cpa_validations", "public.affiliate_financial_transactions",
                        "etl.anomalies", "public.commission_plans", "public.commission_plan_versions",
                        "public.qualification_criteria_versions"}


async def snapshot(url: str, *, strict: bool = False,
                   only: set[str] | None = None) -> dict[str, Counter]:
    """Every table of schemas public and etl (but etl.runs) as a multiset of rows.

    strict: every column (a rolled-back run must leave even timestamps and ids alone);
    otherwise timestamps of bookkeeping and surrogate ids are left out."""
    conn = await asyncpg.connect(url)
    try:
        tables = await conn.fetch(
            "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition "
            "AND n.nspname IN ('public', 'etl') ORDER BY 1, 2"
        )
        out: dict[str, Counter] = {}
        for schema, name in tables:
            full = f"{schema}.{name}"
            if full == "etl.runs" or (only is not None and full not in only):
                continue
            cols = await conn.fetch(
                "SELECT attname, format_type(atttypid, atttypmod) AS t FROM pg_attribute "
                "WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
                full,
            )
            keep = []
            for c in cols:
                if not strict and (c["attname"] in _VOLATILE
                                   or (c["attname"] == "id" and full in _SURROGATE_ID_TABLES)):
                    continue
                keep.append(f'"{c["attname"]}"::text' if c["t"] == "jsonb" else f'"{c["attname"]}"')
            rows = await conn.fetch(f"SELECT {', '.join(keep)} FROM {schema}.\"{name}\"")
            out[full] = Counter(tuple(r) for r in rows)
        return out
    finally:
        await conn.close()


def snapshot_diff(a: dict[str, Counter], b: dict[str, Counter], limit: int = 6) -> str:
    lines = []
    for table in sorted(set(a) | set(b)):
        x, y = a.get(table, Counter()), b.get(table, Counter())
        if x != y:
            only_a, only_b = x - y, y - x
            lines.append(f"== {table}: {sum(only_a.values())} rows only before/left, "
                         f"{sum(only_b.values())} only after/right")
            for r in sorted(only_a, key=repr)[:limit]:
                lines.append(f"  < {r}")
            for r in sorted(only_b, key=repr)[:limit]:
                lines.append(f"  > {r}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- histories


@dataclass(frozen=True)
class Event:
    at: datetime
    order: int          # inserts before updates at the same instant
    kind: str
    args: tuple

    def __repr__(self) -> str:
        return f"E({self.at:%Y-%m-%d %H:%M:%S}Z {self.kind} {self.args})"


# Local midnights (as UTC instants) to start from: a year/month/ISO-week boundary in 2024-25,
# Brazil's DST start of 4 Nov 2018 (local 00:00 skipped) and DST end of 17 Feb 2019.
BASES = (
    datetime(2024, 12, 27, 3, 0, tzinfo=UTC),
    datetime(2018, 11, 1, 3, 0, tzinfo=UTC),
    datetime(2019, 2, 13, 2, 0, tzinfo=UTC),
)
# minutes after the base's midnight: local midnight +-1 min under both offsets, noon, ...
EDGE_MINUTES = (0, 1, 59, 60, 61, 719, 1379, 1380, 1439)
DEPOSITS = ("0.01", "5.00", "10.00", "14.99", "15.00", "20.00", "29.99", "30.00", "30.00", "45.50",
            "50.00", "100.00")
STAKES = ("0.00", "0.10", "0.30", "0.50", "0.70", "10.00", "33.33", "49.99", "50.00", "60.00",
          "60.00", "99.99", "100.00", "100.00")
WINS = ("0.00", "0.00", "0.05", "0.25", "1.00", "20.00", "45.00", "75.50", "150.00")


def _row_key(e: Event) -> tuple:
    a = e.args
    return {
        "user": lambda: ("cadastro", a[0]), "user_upd": lambda: ("cadastro", a[0]),
        "track": lambda: ("tracked", a[1]), "move": lambda: ("tracked", a[0]),
        "money": lambda: (a[0], a[1]), "money_status": lambda: (a[0], a[1]),
        "bet": lambda: ("bet", a[0]),
    }[e.kind]()


@dataclass
class History:
    events: list[Event]
    cuts: list[datetime]          # batch boundaries: an ETL cycle runs at each cut
    lags: list[int]               # per event: seconds between its timestamp and its commit

    def batches(self, lagged: bool = False) -> list[list[Event]]:
        """The events committed between consecutive cuts, in commit order.

        lagged: each row becomes visible up to 5 minutes after its timestamp (the source's
        commit/replication lag, operation_db.sql), never before the row it updates."""
        evs = sorted(self.events, key=lambda e: (e.at, e.order))
        visible: dict[int, datetime] = {}
        last: dict[tuple, datetime] = {}
        for e in evs:
            lag = timedelta(seconds=self.lags[self.events.index(e)]) if lagged else timedelta(0)
            v = max(e.at + lag, last.get(_row_key(e), e.at))
            visible[id(e)] = last[_row_key(e)] = v
        evs.sort(key=lambda e: (visible[id(e)], e.at, e.order))
        out: list[list[Event]] = [[]]
        bounds = sorted(self.cuts)
        i = 0
        for e in evs:
            while i < len(bounds) and visible[id(e)] >= bounds[i]:
                out.append([])
                i += 1
            out[-1].append(e)
        return [b for b in out if b]

    def __repr__(self) -> str:
        lines = ["History("] + [
            f"  {e!r} lag={self.lags[i]}s," for i, e in sorted(
                enumerate(self.events), key=lambda ie: (ie[1].at, ie[1].order))]
        lines.append(f"  cuts={[c.isoformat() for c in sorted(self.cuts)]})")
        return "\n".join(lines)


@st.composite
def histories(draw: st.DrawFn, min_users: int = 5, max_users: int = 15) -> History:
    base = draw(st.sampled_from(BASES))

    def instant() -> datetime:
        day = draw(st.integers(0, 9))
        minute = draw(st.one_of(st.sampled_from(EDGE_MINUTES), st.integers(0, 1439)))
        return base + timedelta(days=day, minutes=minute)

    def later(t: datetime) -> datetime:
        return t + timedelta(minutes=draw(st.sampled_from((1, 7, 11, 60, 600, 1440, 2890, 4321, 7200))))

    n = draw(st.integers(min_users, max_users))
    ids = draw(st.lists(st.integers(1, 400), min_size=n, max_size=n, unique=True))
    row_ids = iter(draw(st.permutations(range(10, 10 + 40 * n))))   # unique, not a time order
    events: list[Event] = []
    ghost = 9000 + draw(st.integers(0, 9))                            # never registers

    for idx, u in enumerate(ids):
        created = instant()
        flagged = draw(st.integers(0, 9)) < 3
        status = draw(st.sampled_from(("ativo", "ativo", "ativo", "inativo", "suspenso")))
        events.append(Event(created, 0, "user", (u, flagged, status)))
        if draw(st.integers(0, 9)) < 2:
            events.append(Event(later(created), 1, "user_upd",
                                (u, draw(st.booleans()),
                                 draw(st.sampled_from(("ativo", "inativo", "suspenso"))))))

        kind = draw(st.sampled_from(("chain",) * 6 + ("random",) * 2 + ("self", "ghost", "none", "none")))
        referrer = {
            "chain": ids[idx - 1] if idx else None,
            "random": draw(st.sampled_from(ids)),
            "self": u,
            "ghost": ghost,
            "none": None,
        }[kind]
        if referrer is not None:
            t = instant()
            events.append(Event(t, 0, "track", (next(row_ids), u, referrer)))
            if draw(st.integers(0, 9)) < 2:
                events.append(Event(later(t), 1, "move", (u, draw(st.sampled_from(ids)))))

        dep_times = []
        for table in ("depositos", "saque"):
            for _ in range(draw(st.integers(0, 4 if table == "depositos" else 2))):
                t = instant()
                if table == "depositos":
                    dep_times.append(t)
                status = draw(st.sampled_from(("aprovado",) * 4 + ("pendente", "cancelado")))
                rid = next(row_ids)
                events.append(Event(t, 0, "money", (table, rid, u, draw(st.sampled_from(DEPOSITS)), status)))
                if draw(st.integers(0, 9)) < 3:
                    new = draw(st.sampled_from(("aprovado", "pendente", "cancelado")))
                    events.append(Event(later(t), 1, "money_status", (table, rid, new)))

        for _ in range(draw(st.integers(0, 6))):
            if dep_times and draw(st.integers(0, 3)) == 0:
                t = draw(st.sampled_from(dep_times))     # same instant as a deposit
            else:
                t = instant()
            events.append(Event(t, 0, "bet", (next(row_ids), u, draw(st.sampled_from(STAKES)),
                                              draw(st.sampled_from(WINS)))))

    times = sorted({e.at for e in events})
    cuts = draw(st.lists(st.sampled_from(times[1:]), max_size=6, unique=True)) if len(times) > 1 else []
    lags = draw(st.lists(st.sampled_from((0, 0, 0, 0, 1, 60, 299, 300)),
                         min_size=len(events), max_size=len(events)))
    return History(events, cuts, lags)


async def write_events(url: str, events: list[Event]) -> None:
    conn = await asyncpg.connect(url)
    try:
        async with conn.transaction():
            for e in sorted(events, key=lambda e: (e.at, e.order)):
                a = e.args
                if e.kind == "user":
                    u, flagged, status = a
                    await conn.execute(
                        "INSERT INTO cadastro (id, nome, email, telefone, afiliado, status, criado_em, "
                        "atualizado_em) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
                        u, f"User {u}", f"user{u}@example.com", f"+55 11 9{u:08d}", flagged, status, e.at)
                elif e.kind == "user_upd":
                    u, flagged, status = a
                    await conn.execute(
                        "UPDATE cadastro SET afiliado = $2, status = $3, atualizado_em = $4 WHERE id = $1",
                        u, flagged, status, e.at)
                elif e.kind == "track":
                    rid, u, ref = a
                    await conn.execute(
                        "INSERT INTO tracked (id, user_id, afiliado_id, criado_em, atualizado_em) "
                        "VALUES ($1, $2, $3, $4, $4)", rid, u, ref, e.at)
                elif e.kind == "move":
                    u, ref = a
                    await conn.execute(
                        "UPDATE tracked SET afiliado_id = $2, atualizado_em = $3 WHERE user_id = $1",
                        u, ref, e.at)
                elif e.kind == "money":
                    table, rid, u, valor, status = a
                    await conn.execute(
                        f"INSERT INTO {table} (id, user_id, valor, status, criado_em, atualizado_em) "
                        "VALUES ($1, $2, $3, $4, $5, $5)", rid, u, Decimal(valor), status, e.at)
                elif e.kind == "money_status":
                    table, rid, status = a
                    await conn.execute(
                        f"UPDATE {table} SET status = $2, atualizado_em = $3 WHERE id = $1",
                        rid, status, e.at)
                elif e.kind == "bet":
                    rid, u, stake, win = a
                    await conn.execute(
                        "INSERT INTO casino_bets_v (id, user_id, jogo, valor_aposta, valor_premio, "
                        "criado_em) VALUES ($1, $2, 'slots', $3, $4, $5)",
                        rid, u, Decimal(stake), Decimal(win), e.at)
                else:  # pragma: no cover
                    raise AssertionError(e.kind)
    finally:
        await conn.close()


# ---------------------------------------------------------------------------- checks


async def assert_matches_oracle(robust_url: str, exp: oracle.Expected, history: object) -> None:
    got = await oracle.read_robust(robust_url)
    d = oracle.diff(exp.tables(), got)
    assert not d, f"robust tables differ from the oracle:\n{d}"


async def assert_invariant_3(robust_url: str) -> None:
    conn = await asyncpg.connect(robust_url)
    try:
        mlm = {r["affiliate_id"]: r for r in await conn.fetch("SELECT * FROM affiliate_mlm_structure")}
        aff = {r["affiliate_id"]: r for r in await conn.fetch("SELECT * FROM affiliates")}
        summaries = await conn.fetch(
            "SELECT affiliate_id, period_type, new_referrals, validated_referrals, total_deposits, "
            "total_bets, total_ggr, cpa_earned, rev_earned, level_breakdown::text AS lb "
            "FROM affiliate_periodic_summaries")
        l1_validations = {r[0]: r[1] for r in await conn.fetch(
            "SELECT affiliate_id, count(*) FROM affiliate_cpa_validations WHERE cpa_level = 1 "
            "GROUP BY affiliate_id")}
    finally:
        await conn.close()
    assert set(mlm) == set(aff), "affiliates and affiliate_mlm_structure hold different affiliates"

    fields = (("new_referrals", "count"), ("deposits", "deposits"), ("bets", "bets"),
              ("ggr", "ggr"), ("cpa", "cpa"), ("rev", "rev"))
    sums: dict[tuple, Decimal] = defaultdict(Decimal)
    validated: dict[tuple, int] = defaultdict(int)
    for s in summaries:
        lb = json.loads(s["lb"])
        assert set(lb) == {"1", "2", "3", "4", "5"}, lb
        a, pt = s["affiliate_id"], s["period_type"]
        assert a in mlm, f"summary of a non-affiliate {a}"
        for L in "12345":
            for f, _ in fields:
                v = lb[L][f]
                if f != "new_referrals":
                    assert isinstance(v, str) and v == oracle.money_str(Decimal(v)), (
                        f"level_breakdown amount {v!r} is not a 2-place decimal string")
                sums[(a, pt, int(L), f)] += Decimal(v)
        # the row's own totals are its breakdown's
        assert s["new_referrals"] == lb["1"]["new_referrals"]
        for col, f in (("total_deposits", "deposits"), ("total_bets", "bets"), ("total_ggr", "ggr"),
                       ("cpa_earned", "cpa"), ("rev_earned", "rev")):
            assert s[col] == sum(Decimal(lb[L][f]) for L in "12345"), (a, pt, col)
        validated[(a, pt)] += s["validated_referrals"]

    for a, m in mlm.items():
        for pt in oracle.PERIOD_TYPES:
            for L in oracle.LEVELS:
                for f, col in fields:
                    assert sums[(a, pt, L, f)] == m[f"level_{L}_{col}"], (
                        f"affiliate {a} {pt} level {L} {f}: summaries add to {sums[(a, pt, L, f)]}, "
                        f"mlm has {m[f'level_{L}_{col}']}")
            assert validated[(a, pt)] == l1_validations.get(a, 0) == aff[a]["total_validated_referrals"]
        t = aff[a]
        assert t["total_referrals"] == m["level_1_count"]
        assert t["total_network_size"] == m["total_network_size"] == sum(
            m[f"level_{L}_count"] for L in oracle.LEVELS)
        for col, c in (("total_deposits", "deposits"), ("total_bets", "bets"), ("total_ggr", "ggr"),
                       ("total_cpa_earned", "cpa"), ("total_rev_earned", "rev")):
            assert t[col] == sum(m[f"level_{L}_{c}"] for L in oracle.LEVELS), (a, col)


_COMPARED_B = {
    "public.affiliates", "public.affiliate_mlm_structure", "public.affiliate_referrals",
    "public.affiliate_cpa_validations", "public.affiliate_financial_transactions",
    "public.affiliate_periodic_summaries", "etl.affiliate_level_periods",
}

# ---------------------------------------------------------------------------- properties

# FATURE_PROPERTY_SCALE=10 runs ten times as many examples (a longer bug hunt).
SCALE = float(os.environ.get("FATURE_PROPERTY_SCALE", "1"))


def examples(n: int) -> int:
    return max(1, int(n * SCALE))


PROFILE = dict(deadline=None, derandomize=False, print_blob=True,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                      HealthCheck.function_scoped_fixture])


@pytest.mark.slow
@hsettings(max_examples=examples(20), **PROFILE)
@given(history=histories(), full=st.booleans())
def test_single_run_equals_oracle_and_is_idempotent(
    dbs: Databases, history: History, full: bool
) -> None:
    """a + c + d: one run from empty = the oracle; a second run changes nothing; invariant 3."""

    async def body() -> None:
        await dbs.reset()
        r, o = dbs.robust_url, dbs.operation_url
        s = make_settings(r, o)
        await write_events(o, history.events)
        result = await run_cycle(s, r, o, full=full)
        assert result.status == "success"
        src = await oracle.read_source(o)
        await assert_matches_oracle(r, oracle.expected(src), history)
        await assert_invariant_3(r)
        before = await snapshot(r)
        await run_cycle(s, r, o)
        after = await snapshot(r)
        assert before == after, f"a cycle with no source change changed:\n{snapshot_diff(before, after)}"

    asyncio.run(body())


@pytest.mark.slow
@hsettings(max_examples=examples(15), **PROFILE)
@given(history=histories(), lagged=st.booleans())
def test_incremental_batches_equal_full_recompute(
    dbs: Databases, history: History, lagged: bool
) -> None:
    """b (+ c, d): chronological batches with a cycle after each = a full recompute afterwards,
    = the oracle under the ledger the incremental cycles write.

    lagged: rows commit up to 5 minutes after their timestamps (the source contract), so a
    batch may hold rows older than the previous cycle's cursor (the overlap must catch them)."""

    async def body() -> None:
        await dbs.reset()
        r, o = dbs.robust_url, dbs.operation_url
        s = make_settings(r, o)
        ledger: oracle.Ledger = {}
        for batch in history.batches(lagged):
            await write_events(o, batch)
            await run_cycle(s, r, o)
            ledger = oracle.advance_ledger(await oracle.read_source(o), ledger)
        src = await oracle.read_source(o)
        exp = oracle.expected(src, ledger)
        await assert_matches_oracle(r, exp, history)
        await assert_invariant_3(r)
        incremental = await snapshot(r, only=_COMPARED_B)
        await run_cycle(s, r, o, full=True)
        full = await snapshot(r, only=_COMPARED_B)
        assert incremental == full, (
            f"incremental state != full recompute:\n{snapshot_diff(incremental, full)}")
        before = await snapshot(r)
        await run_cycle(s, r, o)
        assert before == await snapshot(r), "a repeated cycle changed something"

    asyncio.run(body())


@pytest.mark.slow
@hsettings(max_examples=examples(3), **PROFILE)
@given(history=histories(min_users=5, max_users=10), split=st.floats(0.2, 0.8))
def test_injected_failure_changes_nothing(
    dbs: Databases, history: History, split: float
) -> None:
    """e: a failure after any step rolls the whole cycle back; the next run is correct."""

    async def body() -> None:
        evs = sorted(history.events, key=lambda e: (e.at, e.order))
        times = sorted({e.at for e in evs})
        cut = times[int(len(times) * split)]
        first = [e for e in evs if e.at < cut]
        second = [e for e in evs if e.at >= cut]
        await dbs.reset()
        r, o = dbs.robust_url, dbs.operation_url
        s = make_settings(r, o)
        await write_events(o, first)
        await run_cycle(s, r, o)
        ledger = oracle.advance_ledger(await oracle.read_source(o), {})
        await write_events(o, second)
        for full in (False, True):
            for step in STEPS:
                before = await snapshot(r, strict=True)
                with pytest.raises(InjectedFailure):
                    await run_cycle(s, r, o, full=full, fail_after=step)
                after = await snapshot(r, strict=True)
                assert before == after, (
                    f"failure after {step} (full={full}) left changes:\n{snapshot_diff(before, after)}")
        await run_cycle(s, r, o)
        ledger = oracle.advance_ledger(await oracle.read_source(o), ledger)
        await assert_matches_oracle(r, oracle.expected(await oracle.read_source(o), ledger), history)
        await assert_invariant_3(r)

    asyncio.run(body())


# ---------------------------------------------------------------------------- the oracle itself


async def test_oracle_reproduces_worked_example(operation_url: str, settings, robust_url: str) -> None:
    """The oracle agrees with EXAMPLE.md (and so does the ETL on it)."""
    from tests.support.factories import Operation, write_worked_example

    op = await Operation.open(operation_url)
    await write_worked_example(op)
    await op.close()

    exp = oracle.expected(await oracle.read_source(operation_url))
    D = Decimal
    assert {(a[0], a[5], a[6], a[7], a[9], a[10], a[11], a[12], a[13]) for a in exp.affiliates} == {
        (101, 1, 1, D("70.00"), D("310.00"), D("115.00"), D("50.00"), D("21.25"), 2),
        (102, 1, 0, D("20.00"), D("200.00"), D("50.00"), D("0.00"), D("12.50"), 1),
    }
    [v] = exp.validations
    assert v[:4] == (101, 102, 1, D("50.00")) and v[4].isoformat() == "2025-03-04T02:30:00+00:00"
    assert v[5:8] == (D("50.00"), D("110.00"), 2)
    weekly = sorted(s for s in exp.summaries if s[0] == 101 and s[1] == "weekly")
    assert [(str(s[2]), *s[3:10]) for s in weekly] == [
        ("2025-02-24", 1, 0, D("50.00"), D("80.00"), D("80.00"), D("0.00"), D("20.00")),
        ("2025-03-03", 0, 1, D("20.00"), D("230.00"), D("35.00"), D("50.00"), D("1.25")),
    ]
    lb = json.loads(weekly[1][10])
    assert lb["1"] == {"new_referrals": 0, "deposits": "0.00", "bets": "30.00",
                       "ggr": "-15.00", "cpa": "50.00", "rev": "-3.75"}
    assert lb["2"] == {"new_referrals": 1, "deposits": "20.00", "bets": "200.00",
                       "ggr": "50.00", "cpa": "0.00", "rev": "5.00"}
    daily = sorted((str(s[2]), s[9], s[8]) for s in exp.summaries if s[0] == 101 and s[1] == "daily")
    assert daily == [("2025-03-02", D("20.00"), D("0.00")), ("2025-03-03", D("-3.75"), D("50.00")),
                     ("2025-03-05", D("5.00"), D("0.00"))]

    await run_cycle(settings, robust_url, operation_url)
    await assert_matches_oracle(robust_url, exp, None)
    await assert_invariant_3(robust_url)


async def test_ledger_survives_move_and_cancellation(operation_url: str, settings, robust_url: str) -> None:
    """The ledger path, always exercised: 102 validates under 101 (not flagged), then its
    referral moves to 103 and its deposit is cancelled. The CPA stays with 101, which stays
    an affiliate (team reading); 103 gets 102 as a validated referral with no CPA."""
    from tests.support.factories import Operation

    op = await Operation.open(operation_url)
    await op.user(101, "Ana")
    await op.user(102, "Bruno")
    await op.user(103, "Carla")
    await op.user(104, "Davi")
    await op.track(102, 101, "2025-03-02 10:00Z")
    await op.track(104, 102, "2025-03-02 10:30Z")
    dep = await op.deposit(102, "50.00", "2025-03-02 11:00Z")
    await op.bet(102, "80.00", "0.00", "2025-03-02 12:00Z")
    await op.bet(102, "30.00", "45.00", "2025-03-04 02:30Z")
    await run_cycle(settings, robust_url, operation_url)
    ledger = oracle.advance_ledger(await oracle.read_source(operation_url), {})
    assert [(v.affiliate_id, v.cpa_level) for v in ledger.values()] == [(101, 1)]

    await op.move(102, 103, "2025-03-05 10:00Z")
    await op.set_status("depositos", dep, "cancelado", "2025-03-05 10:01Z")
    await op.bet(104, "10.00", "0.00", "2025-03-05 11:00Z")
    await op.close()
    await run_cycle(settings, robust_url, operation_url)
    src = await oracle.read_source(operation_url)
    ledger = oracle.advance_ledger(src, ledger)
    exp = oracle.expected(src, ledger)
    assert 101 in {a[0] for a in exp.affiliates}
    await assert_matches_oracle(robust_url, exp, None)
    await assert_invariant_3(robust_url)
    incremental = await snapshot(robust_url, only=_COMPARED_B)
    await run_cycle(settings, robust_url, operation_url, full=True)
    assert incremental == await snapshot(robust_url, only=_COMPARED_B)
    await assert_matches_oracle(robust_url, exp, None)
