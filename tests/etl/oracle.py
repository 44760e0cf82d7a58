"""An independent, pure-Python reading of METRICS.md: what the robust tables must hold.

Written from METRICS.md alone (not from the ETL's SQL). It reads the operation database's
rows with asyncpg and computes, straight from them:

* usable edges, the upline walk (cycle guard, 5 levels), affiliates, the networks N_L(A);
* approved deposits/withdrawals and bets by ``criado_em``, local days/weeks/months/years;
* each user's qualifying instant t* (each instant judged by the criteria version in force on
  its local date, with its window) and the CPA ledger;
* the daily REV and every robust table the checks compare.

The criteria versions are an input (``read_criteria`` reads them from a robust database; the
default is the program's default set, in force since always).

The ledger is an input: ``advance_ledger`` adds the validations one ETL cycle over the
current source would write (users not validated yet, that have t* and an upline, paid to
their *current* upline); ``expected`` derives all the other tables from the source and a
ledger. ``expected(src)`` with no ledger is the single full load from an empty database.

Team reading (documented): a user that holds a CPA validation stays an affiliate even
when it no longer is flagged or p1 of anyone.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

import asyncpg

CENT = Decimal("0.01")
ZERO = Decimal("0.00")
LEVELS = (1, 2, 3, 4, 5)
CPA_AMOUNTS = {1: Decimal("50.00"), 2: Decimal("20.00"), 3: Decimal("10.00"),
               4: Decimal("5.00"), 5: Decimal("5.00")}
REV_RATES = {1: Decimal("0.25"), 2: Decimal("0.10"), 3: Decimal("0.05"),
             4: Decimal("0.03"), 5: Decimal("0.02")}
MIN_DEPOSITS = Decimal("30.00")
MIN_STAKE = Decimal("100.00")
MIN_ACTIVE_DAYS = 2
STATUS = {"ativo": "active", "inativo": "inactive", "suspenso": "suspended"}
PERIOD_TYPES = ("daily", "weekly", "monthly", "yearly")


@dataclass(frozen=True)
class Criteria:
    """One criteria version: in force from its local date until the next version's."""

    effective_from: date
    min_deposits: Decimal
    min_stake: Decimal
    min_active_days: int
    window_days: int | None = None  # count only [referral, referral + N x 24 h)


DEFAULT_CRITERIA = (Criteria(date(1900, 1, 1), MIN_DEPOSITS, MIN_STAKE, MIN_ACTIVE_DAYS),)


async def read_criteria(robust_url: str) -> tuple[Criteria, ...]:
    """The criteria versions of a robust database, oldest first."""
    conn = await asyncpg.connect(robust_url)
    try:
        rows = await conn.fetch(
            "SELECT effective_from, min_deposits, min_stake, min_active_days, window_days "
            "FROM qualification_criteria_versions ORDER BY effective_from")
    finally:
        await conn.close()
    return tuple(Criteria(*r) for r in rows)


def money(x: Decimal) -> Decimal:
    """Round to the cent, half away from zero; never a negative zero."""
    q = Decimal(x).quantize(CENT, rounding=ROUND_HALF_UP)
    return ZERO if q == 0 else q


def money_str(x: Decimal) -> str:
    return str(money(x))


def period_starts(day: date) -> dict[str, date]:
    return {
        "daily": day,
        "weekly": day - timedelta(days=day.weekday()),
        "monthly": day.replace(day=1),
        "yearly": day.replace(month=1, day=1),
    }


# ---------------------------------------------------------------------------- the source
@dataclass
class Source:
    users: dict[int, dict]                      # cadastro by id
    tracked: dict[int, tuple[int, datetime]]    # referred user -> (afiliado_id, criado_em)
    deposits: list[tuple[int, Decimal, str, datetime]] = field(default_factory=list)
    withdrawals: list[tuple[int, Decimal, str, datetime]] = field(default_factory=list)
    bets: list[tuple[int, Decimal, Decimal, datetime]] = field(default_factory=list)


async def read_source(url: str) -> Source:
    conn = await asyncpg.connect(url)
    try:
        users = {r["id"]: dict(r) for r in await conn.fetch("SELECT * FROM cadastro")}
        tracked = {
            r["user_id"]: (r["afiliado_id"], r["criado_em"])
            for r in await conn.fetch("SELECT user_id, afiliado_id, criado_em FROM tracked")
        }
        deps = [tuple(r) for r in await conn.fetch(
            "SELECT user_id, valor, status, criado_em FROM depositos")]
        wds = [tuple(r) for r in await conn.fetch(
            "SELECT user_id, valor, status, criado_em FROM saque")]
        bets = [tuple(r) for r in await conn.fetch(
            "SELECT user_id, valor_aposta, valor_premio, criado_em FROM casino_bets_v")]
    finally:
        await conn.close()
    return Source(users, tracked, deps, wds, bets)


# ---------------------------------------------------------------------------- the network
def usable_edges(src: Source) -> dict[int, tuple[int, datetime]]:
    return {
        u: (a, t) for u, (a, t) in src.tracked.items()
        if u in src.users and a in src.users and u != a
    }


def uplines(src: Source) -> dict[int, list[int]]:
    """user -> [p1, p2, ...] (at most 5), cycle-guarded."""
    edges = usable_edges(src)
    result: dict[int, list[int]] = {}
    for u in src.users:
        chain: list[int] = []
        seen = {u}
        cur = u
        while len(chain) < 5:
            edge = edges.get(cur)
            if edge is None:
                break
            r = edge[0]
            if r in seen:
                break
            chain.append(r)
            seen.add(r)
            cur = r
        result[u] = chain
    return result


# ---------------------------------------------------------------------------- activity
@dataclass
class Activity:
    deposits: dict[int, list[tuple[datetime, Decimal]]]
    withdrawals: dict[int, list[tuple[datetime, Decimal]]]
    bets: dict[int, list[tuple[datetime, Decimal, Decimal]]]


def activity(src: Source) -> Activity:
    deps: dict[int, list] = defaultdict(list)
    wds: dict[int, list] = defaultdict(list)
    bets: dict[int, list] = defaultdict(list)
    for u, v, s, t in src.deposits:
        if s == "aprovado":
            deps[u].append((t, v))
    for u, v, s, t in src.withdrawals:
        if s == "aprovado":
            wds[u].append((t, v))
    for u, stake, win, t in src.bets:
        bets[u].append((t, stake, win))
    return Activity(deps, wds, bets)


@dataclass(frozen=True)
class Qualification:
    at: datetime
    deposits: Decimal
    stake: Decimal
    days: int
    criteria: Criteria | None = None


def in_force(criteria: tuple[Criteria, ...], day: date) -> Criteria | None:
    """The version in force on local date ``day``: the latest one effective on or before it."""
    current = None
    for version in sorted(criteria, key=lambda c: c.effective_from):
        if version.effective_from <= day:
            current = version
    return current


def qualifying_instant(user: int, act: Activity, tz: ZoneInfo,
                       criteria: tuple[Criteria, ...] = DEFAULT_CRITERIA,
                       referred_at: datetime | None = None) -> Qualification | None:
    """The earliest deposit or bet instant at which the version in force on its local date
    holds, counting the activity at or before it (under a window: from the referral on, and
    only instants inside the window are judged)."""
    deps = act.deposits.get(user, [])
    bets = act.bets.get(user, [])
    instants = sorted({t for t, _ in deps} | {t for t, _, _ in bets})
    for t in instants:
        version = in_force(criteria, t.astimezone(tz).date())
        if version is None:
            continue
        since: datetime | None = None
        if version.window_days is not None:
            if referred_at is None:
                continue
            end = referred_at.astimezone(UTC) + timedelta(hours=24 * version.window_days)
            if not referred_at <= t < end:
                continue
            since = referred_at

        def counted(ti: datetime, t: datetime = t, since: datetime | None = since) -> bool:
            return ti <= t and (since is None or ti >= since)

        d = sum((v for ti, v in deps if counted(ti)), Decimal(0))
        s = sum((st for ti, st, _ in bets if counted(ti)), Decimal(0))
        days = len({ti.astimezone(tz).date() for ti, _, _ in bets if counted(ti)})
        if d >= version.min_deposits and s >= version.min_stake and days >= version.min_active_days:
            return Qualification(t, money(d), money(s), days, version)
    return None


# ---------------------------------------------------------------------------- the ledger
@dataclass(frozen=True)
class Validation:
    affiliate_id: int
    referred_user_id: int
    cpa_level: int
    cpa_amount: Decimal
    validation_date: datetime
    user_deposits: Decimal
    user_bets: Decimal
    days_active: int


Ledger = dict[tuple[int, int], Validation]   # (referred user, level) -> row


def advance_ledger(src: Source, ledger: Ledger | None = None,
                   tz_name: str = "America/Sao_Paulo",
                   criteria: tuple[Criteria, ...] = DEFAULT_CRITERIA) -> Ledger:
    """The ledger after one ETL cycle over ``src``: new users that qualify and have an upline
    validate once, paid to their current upline; existing rows never change."""
    tz = ZoneInfo(tz_name)
    out: Ledger = dict(ledger or {})
    validated = {u for u, _ in out}
    ups = uplines(src)
    act = activity(src)
    edges = usable_edges(src)
    for u in sorted(src.users):
        if u in validated or not ups[u]:
            continue
        q = qualifying_instant(u, act, tz, criteria, edges[u][1])
        if q is None:
            continue
        for level, a in enumerate(ups[u], start=1):
            out[(u, level)] = Validation(a, u, level, CPA_AMOUNTS[level], q.at,
                                         q.deposits, q.stake, q.days)
    return out


# ---------------------------------------------------------------------------- expected tables
@dataclass
class Expected:
    ledger: Ledger
    affiliates: set[tuple]
    mlm: set[tuple]
    referrals: set[tuple]
    validations: set[tuple]
    summaries: set[tuple]
    # handy lookups for assertions/debugging
    networks: dict[int, dict[int, set[int]]] = field(default_factory=dict)
    daily_rev: dict[tuple[int, int, date], Decimal] = field(default_factory=dict)

    def tables(self) -> dict[str, set[tuple]]:
        return {
            "affiliates": self.affiliates,
            "affiliate_mlm_structure": self.mlm,
            "affiliate_referrals": self.referrals,
            "affiliate_cpa_validations": self.validations,
            "affiliate_periodic_summaries": self.summaries,
        }


def _zero_level() -> dict:
    return {"new_referrals": 0, "deposits": Decimal(0), "bets": Decimal(0), "ggr": Decimal(0),
            "cpa": Decimal(0), "rev": Decimal(0), "validations": 0}


def expected(src: Source, ledger: Ledger | None = None,
             tz_name: str = "America/Sao_Paulo",
             criteria: tuple[Criteria, ...] = DEFAULT_CRITERIA) -> Expected:
    """Every compared robust table for ``src``; ``ledger`` None = the from-scratch ledger."""
    tz = ZoneInfo(tz_name)
    if ledger is None:
        ledger = advance_ledger(src, {}, tz_name, criteria)
    ups = uplines(src)
    act = activity(src)
    edges = usable_edges(src)

    p1s = {chain[0] for chain in ups.values() if chain}
    holders = {v.affiliate_id for v in ledger.values()}
    flagged = {u for u, r in src.users.items() if r["afiliado"]}
    affiliates = sorted(flagged | p1s | (holders & set(src.users)))

    networks: dict[int, dict[int, set[int]]] = {a: {L: set() for L in LEVELS} for a in affiliates}
    for u, chain in ups.items():
        for level, a in enumerate(chain, start=1):
            networks.setdefault(a, {L: set() for L in LEVELS})[level].add(u)

    def local(t: datetime) -> date:
        return t.astimezone(tz).date()

    dep_total = {u: sum((v for _, v in xs), Decimal(0)) for u, xs in act.deposits.items()}
    wd_total = {u: sum((v for _, v in xs), Decimal(0)) for u, xs in act.withdrawals.items()}
    stake_total = {u: sum((s for _, s, _ in xs), Decimal(0)) for u, xs in act.bets.items()}
    ggr_total = {u: sum((s - w for _, s, w in xs), Decimal(0)) for u, xs in act.bets.items()}
    user_day_ggr: dict[int, dict[date, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for u, xs in act.bets.items():
        for t, s, w in xs:
            user_day_ggr[u][local(t)] += s - w

    validated_at: dict[int, datetime] = {}
    for v in ledger.values():
        validated_at[v.referred_user_id] = v.validation_date
    cpa_by = defaultdict(Decimal)          # (A, U, L) -> amount
    cpa_level = defaultdict(Decimal)       # (A, L) -> amount
    l1_validations = defaultdict(int)
    for v in ledger.values():
        cpa_by[(v.affiliate_id, v.referred_user_id, v.cpa_level)] += v.cpa_amount
        cpa_level[(v.affiliate_id, v.cpa_level)] += v.cpa_amount
        if v.cpa_level == 1:
            l1_validations[v.affiliate_id] += 1

    # daily REV per (A, L, day)
    daily_rev: dict[tuple[int, int, date], Decimal] = {}
    for a in affiliates:
        for level in LEVELS:
            day_ggr: dict[date, Decimal] = defaultdict(Decimal)
            for u in networks[a][level]:
                for d, g in user_day_ggr.get(u, {}).items():
                    day_ggr[d] += g
            for d, g in day_ggr.items():
                daily_rev[(a, level, d)] = money(REV_RATES[level] * g)

    mlm_rows, aff_rows = set(), set()
    for a in affiliates:
        per = {}
        for level in LEVELS:
            net = networks[a][level]
            per[level] = (
                len(net),
                money(sum((dep_total.get(u, 0) for u in net), Decimal(0))),
                money(sum((stake_total.get(u, 0) for u in net), Decimal(0))),
                money(sum((ggr_total.get(u, 0) for u in net), Decimal(0))),
                money(cpa_level[(a, level)]),
                money(sum((r for (aa, ll, _), r in daily_rev.items() if aa == a and ll == level),
                          Decimal(0))),
            )
        size = sum(per[L][0] for L in LEVELS)
        mlm_rows.add((a, *[x for L in LEVELS for x in per[L]], size))
        r = src.users[a]
        withdrawals = money(sum(
            (wd_total.get(u, 0) for L in LEVELS for u in networks[a][L]), Decimal(0)))
        aff_rows.add((
            a, r["nome"], r["email"], r["telefone"], STATUS[r["status"]],
            per[1][0], l1_validations[a],
            money(sum(per[L][1] for L in LEVELS)), withdrawals,
            money(sum(per[L][2] for L in LEVELS)), money(sum(per[L][3] for L in LEVELS)),
            money(sum(per[L][4] for L in LEVELS)), money(sum(per[L][5] for L in LEVELS)),
            size,
        ))

    ref_rows = set()
    for a in affiliates:
        for level in LEVELS:
            for u in networks[a][level]:
                ref_rows.add((
                    a, u, level, edges[u][1],
                    "validated" if u in validated_at else "pending",
                    validated_at.get(u),
                    money(dep_total.get(u, 0)), money(stake_total.get(u, 0)),
                    money(cpa_by[(a, u, level)]),
                ))

    val_rows = {
        (v.affiliate_id, v.referred_user_id, v.cpa_level, v.cpa_amount, v.validation_date,
         v.user_deposits, v.user_bets, v.days_active, "pending")
        for v in ledger.values()
    }

    # periodic summaries
    buckets: dict[tuple[int, str, date], dict[int, dict]] = {}

    def bucket(a: int, day: date) -> list[dict[int, dict]]:
        out = []
        for ptype, start in period_starts(day).items():
            key = (a, ptype, start)
            if key not in buckets:
                buckets[key] = {L: _zero_level() for L in LEVELS}
            out.append(buckets[key])
        return out

    for a in affiliates:
        for level in LEVELS:
            for u in networks[a][level]:
                for b in bucket(a, local(edges[u][1])):
                    b[level]["new_referrals"] += 1
                for t, v in act.deposits.get(u, []):
                    for b in bucket(a, local(t)):
                        b[level]["deposits"] += v
                for t, s, w in act.bets.get(u, []):
                    for b in bucket(a, local(t)):
                        b[level]["bets"] += s
                        b[level]["ggr"] += s - w
    for v in ledger.values():
        if v.affiliate_id not in networks:
            continue
        for b in bucket(v.affiliate_id, local(v.validation_date)):
            b[v.cpa_level]["cpa"] += v.cpa_amount
            if v.cpa_level == 1:
                b[1]["validations"] += 1
    for (a, level, d), rev in daily_rev.items():
        for ptype, start in period_starts(d).items():
            # a day with REV always has a bet, so the bucket exists
            buckets[(a, ptype, start)][level]["rev"] += rev

    sum_rows = set()
    for (a, ptype, start), lv in buckets.items():
        breakdown = {
            str(L): {
                "new_referrals": lv[L]["new_referrals"],
                "deposits": money_str(lv[L]["deposits"]),
                "bets": money_str(lv[L]["bets"]),
                "ggr": money_str(lv[L]["ggr"]),
                "cpa": money_str(lv[L]["cpa"]),
                "rev": money_str(lv[L]["rev"]),
            }
            for L in LEVELS
        }
        sum_rows.add((
            a, ptype, start, lv[1]["new_referrals"], lv[1]["validations"],
            money(sum(lv[L]["deposits"] for L in LEVELS)),
            money(sum(lv[L]["bets"] for L in LEVELS)),
            money(sum(lv[L]["ggr"] for L in LEVELS)),
            money(sum(lv[L]["cpa"] for L in LEVELS)),
            money(sum(lv[L]["rev"] for L in LEVELS)),
            json.dumps(breakdown, sort_keys=True),
        ))

    return Expected(ledger, aff_rows, mlm_rows, ref_rows, val_rows, sum_rows, networks, daily_rev)


# ---------------------------------------------------------------------------- the robust side
_MLM_COLS = ", ".join(
    f"level_{L}_{c}" for L in LEVELS for c in ("count", "deposits", "bets", "ggr", "cpa", "rev")
)

ROBUST_QUERIES = {
    "affiliates": (
        "SELECT affiliate_id, name, email, phone, status, total_referrals, "
        "total_validated_referrals, total_deposits, total_withdrawals, total_bets, total_ggr, "
        "total_cpa_earned, total_rev_earned, total_network_size FROM affiliates"
    ),
    "affiliate_mlm_structure": (
        f"SELECT affiliate_id, {_MLM_COLS}, total_network_size FROM affiliate_mlm_structure"
    ),
    "affiliate_referrals": (
        "SELECT referrer_id, referred_id, mlm_level, referral_date, status, validation_date, "
        "total_deposits, total_bets, cpa_amount FROM affiliate_referrals"
    ),
    "affiliate_cpa_validations": (
        "SELECT affiliate_id, referred_user_id, cpa_level, cpa_amount, validation_date, "
        "user_deposits, user_bets, days_active, cpa_status FROM affiliate_cpa_validations"
    ),
    "affiliate_periodic_summaries": (
        "SELECT affiliate_id, period_type, period_start, new_referrals, validated_referrals, "
        "total_deposits, total_bets, total_ggr, cpa_earned, rev_earned, level_breakdown::text "
        "FROM affiliate_periodic_summaries"
    ),
}


def _norm(value: object) -> object:
    if isinstance(value, Decimal):
        return money(value)
    return value


async def read_robust(url: str) -> dict[str, set[tuple]]:
    """The compared columns of the robust tables, in the oracle's shapes."""
    conn = await asyncpg.connect(url)
    try:
        out: dict[str, set[tuple]] = {}
        for table, sql in ROBUST_QUERIES.items():
            rows = set()
            for r in await conn.fetch(sql):
                t = tuple(_norm(x) for x in r)
                if table == "affiliate_periodic_summaries":
                    t = (*t[:-1], json.dumps(json.loads(t[-1]), sort_keys=True))
                rows.add(t)
            out[table] = rows
        return out
    finally:
        await conn.close()


def diff(expected_tables: dict[str, set[tuple]], got: dict[str, set[tuple]],
         limit: int = 8) -> str:
    """'' when equal, else a readable description of the differences."""
    lines = []
    for table, exp in expected_tables.items():
        g = got.get(table, set())
        missing = sorted(exp - g, key=repr)
        extra = sorted(g - exp, key=repr)
        if missing or extra:
            lines.append(f"== {table}: {len(missing)} expected rows missing, {len(extra)} unexpected")
            for r in missing[:limit]:
                lines.append(f"  - expected {r}")
            for r in extra[:limit]:
                lines.append(f"  + got      {r}")
    return "\n".join(lines)
