"""When the ETL runs never matters (issue 14; METRICS.md "CPA qualification", "Invariants").

Random histories (tests/support/histories.py): 5-15 users, a few affiliates, up to 4 local
months of sessions (deposits and bets), deposits pending and approved or cancelled later or
committed days late, bets a few minutes late, referrals tracked late and moved, referrers that
register later, events around local midnight (and Brazil's 2018-19 DST changes); changes of
terms through the commissions API at the clock's today, effective tomorrow at the earliest
(criteria with and without windows, zero thresholds included; plans, plan versions,
assignments); the ETL run after random steps; random past months closed, statements approved
and paid, validations rejected (after payment too).

After the last run:
1. for the users the invariant covers (histories.Coverage), the ledger (affiliate, user,
   level, t*, amount, plan version, criteria snapshot) equals a fresh full recompute of the
   same source with the same configuration history, and what a ``--full`` run on the same
   database leaves;
2. for the users it covers, t* and the snapshot are METRICS.md's (tests/etl/oracle.py over the
   final source and criteria history: the version in force at each instant judges it, with
   its window), and every validation's amount is its level's CPA in the plan version in force
   at t* for its affiliate;
3. the daily REV equals the fresh recompute's (invariant 1: the ledger is the one allowed
   difference between incremental runs and a recompute);
4. every statement, open or closed, adds up: its lines to its figures, its figures to what it
   pays (``statement_adds_up``), before and after the ``--full`` run.

The cases of issue 14 (items 1-4) run first as explicit examples. Random examples are few and
small (``FATURE_PROPERTY_SCALE`` multiplies them); the long variant is marked slow.
"""
from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import date
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from hypothesis import HealthCheck, event, example, given
from hypothesis import settings as hsettings

from commissions import service
from db.settings import Settings
from etl.sync import run_cycle
from tests.etl import oracle
from tests.support.databases import admin, drop_database, new_operation_database, new_robust_database
from tests.support.histories import TZ, Coverage, History, Script, add_months, histories, month_start, play
from tests.support.recompute import fresh_recompute

ZERO = Decimal("0.00")
SCALE = float(os.environ.get("FATURE_PROPERTY_SCALE", "1"))
PROFILE: dict[str, Any] = dict(
    deadline=None, derandomize=False, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.function_scoped_fixture])


def examples(n: int) -> int:
    return max(1, int(n * SCALE))


Row = tuple[Any, ...]

LEDGER = """
SELECT affiliate_id, referred_user_id, cpa_level, validation_date, cpa_amount, plan_version_id,
       user_deposits, user_bets, days_active, validation_criteria::text AS snapshot
FROM affiliate_cpa_validations ORDER BY referred_user_id, cpa_level
"""

DAILY_REV = """
SELECT affiliate_id, level, period_start, rev FROM etl.affiliate_level_periods
WHERE period_type = 'daily' AND rev <> 0 ORDER BY 1, 2, 3
"""


async def fetch(url: str, sql: str) -> list[Row]:
    conn = await asyncpg.connect(url)
    try:
        return [tuple(r) for r in await conn.fetch(sql)]
    finally:
        await conn.close()


def covered(rows: list[Row], cov: Coverage) -> list[Row]:
    return [r for r in rows if r[1] not in cov.excluded]


def differences(name: str, left: list[Row], right: list[Row], right_name: str) -> list[str]:
    if left == right:
        return []
    lines = [f"{name} != {right_name}:"]
    lines += [f"  only {name}: {r}" for r in left if r not in right][:12]
    lines += [f"  only {right_name}: {r}" for r in right if r not in left][:12]
    return ["\n".join(lines)]


# ---------------------------------------------------------------------------- METRICS.md


async def by_the_rules(robust_url: str, operation_url: str, ledger: list[Row], cov: Coverage,
                       tz: str) -> list[str]:
    """t* and snapshots of the covered users by the oracle of METRICS.md; every validation
    priced by the plan version in force at t* for its affiliate."""
    problems = []
    zone = ZoneInfo(tz)
    src = await oracle.read_source(operation_url)
    criteria = await oracle.read_criteria(robust_url)
    act, ups, edges = oracle.activity(src), oracle.uplines(src), oracle.usable_edges(src)
    written = {r[1]: (r[3], r[6], r[7], r[8]) for r in ledger}
    for u in sorted(src.users):
        if u in cov.excluded:
            continue
        q = oracle.qualifying_instant(u, act, zone, criteria, edges[u][1] if u in edges else None)
        expected = None if q is None else (q.at, q.deposits, q.stake, q.days)
        got = written.get(u)
        if got is None and expected is not None and ups[u]:
            problems.append(f"user {u} qualifies at {expected[0].astimezone(zone)} (deposits, stake, days "
                            f"{expected[1:]}) and has an upline, but has no validation")
        elif got is not None and got != expected:
            problems.append(f"user {u} validated at {got[0].astimezone(zone)} with deposits, stake, days "
                            f"{got[1:]}; METRICS.md gives {expected and (expected[0].astimezone(zone), *expected[1:])}")

    conn = await asyncpg.connect(robust_url)
    try:
        default = await conn.fetchval("SELECT id FROM commission_plans WHERE is_default")
        history = [tuple(r) for r in await conn.fetch(
            "SELECT affiliate_id, effective_from, plan_id FROM affiliate_plan_history ORDER BY 1, 2")]
        versions = [tuple(r) for r in await conn.fetch(
            "SELECT plan_id, effective_from, id, ARRAY[cpa_level_1, cpa_level_2, cpa_level_3, cpa_level_4,"
            " cpa_level_5] FROM commission_plan_versions ORDER BY 1, 2")]
    finally:
        await conn.close()
    for affiliate, _, level, t_star, amount, version_id, *_ in ledger:
        day = t_star.astimezone(zone).date()
        plan = ([p for a, since, p in history if a == affiliate and since <= day] or [default])[-1]
        in_force = [(v, cpa) for p, since, v, cpa in versions if p == plan and since <= day]
        if not in_force or (version_id, amount) != (in_force[-1][0], in_force[-1][1][level - 1]):
            problems.append(f"validation of affiliate {affiliate} level {level} dated {day}: version "
                            f"{version_id} pays {amount}; plan {plan} in force that day gives "
                            f"{in_force[-1][0] if in_force else None}, {in_force[-1][1][level - 1] if in_force else None}")
    return problems


# ---------------------------------------------------------------------------- statements


def statement_adds_up(s: service.StatementRecord, lines: Sequence[Mapping[str, Any]]) -> list[str]:
    """What is wrong with one statement: its lines against its figures, its figures against
    what it pays (commissions/payout.py ``settle``, the definitions of docs/payouts.md)."""

    def total(kinds: set[str], column: str = "amount") -> Decimal:
        return sum((line[column] for line in lines if line["kind"] in kinds and line[column] is not None), ZERO)

    balance = s.carryover_in + s.rev
    expected: list[tuple[str, object, object]] = [
        ("cpa", s.cpa, total({"cpa", "cpa_rejected"})),
        ("cpa = cpa_validated - cpa_rejected", s.cpa, s.cpa_validated - s.cpa_rejected),
        ("rev", s.rev, total({"rev"})),
        ("cpa_adjustments", s.cpa_adjustments, total({"cpa_adjustment"})),
        ("rev_adjustments", s.rev_adjustments, total({"rev_adjustment"})),
        ("rev_settlements", s.rev_settlements, total({"rev_settlement"})),
        ("rev_payable", s.rev_payable, max(balance, ZERO) + s.rev_settlements),
        ("carryover_out", s.carryover_out, min(balance, ZERO) if s.negative_carryover else ZERO),
        ("payable", s.payable, s.cpa + s.cpa_adjustments + s.rev_payable + s.held_in),
        ("below_min_payout", s.below_min_payout, s.payable < s.min_payout or s.payable <= ZERO),
        ("held_out", s.held_out, s.payable if s.below_min_payout else ZERO),
    ]
    if s.status == "open":  # stored lines keep a rejected validation's amount in its description only
        expected += [("cpa_validated", s.cpa_validated, total({"cpa", "cpa_rejected"}, "listed_amount")),
                     ("cpa_rejected", s.cpa_rejected, total({"cpa_rejected"}, "listed_amount"))]
    elif s.cpa_rejected and not any(line["kind"] == "cpa_rejected" for line in lines):
        expected.append(("cpa_rejected without a cpa_rejected line", s.cpa_rejected, ZERO))
    if not s.negative_carryover:
        expected.append(("carryover_in (carryover off)", s.carryover_in, ZERO))
    if s.status != "open":
        expected.append(("on hold", s.status == "on_hold", s.below_min_payout))
    return [f"{name}: {got}, its lines/figures give {want}" for name, got, want in expected if got != want]


async def check_statements(url: str, tz: str, first: date, last: date) -> list[str]:
    """Every statement of every month from ``first`` to ``last``, open and closed."""
    problems: list[str] = []
    seen: set[str] = set()
    conn = await asyncpg.connect(url)
    try:
        month = first
        while month <= last:
            async with conn.transaction(readonly=True, isolation="repeatable_read"):
                found = [s async for s in service.month_statements(conn, tz, month)]
            for s in found:
                lines = await service.statement_lines(conn, tz, s.affiliate_id, month, is_open=s.status == "open")
                problems += [f"statement {s.affiliate_id}:{month:%Y-%m} ({s.status}): {wrong}"
                             for wrong in statement_adds_up(s, lines)]
                seen |= {s.status} | {line["kind"] for line in lines}
            month = add_months(month, 1)
    finally:
        await conn.close()
    event(f"statements and lines seen: {', '.join(sorted(seen)) or 'none'}")
    return problems


# ---------------------------------------------------------------------------- the property


def make_settings(robust_url: str, operation_url: str) -> Settings:
    return Settings(database_url=robust_url, operation_database_url=operation_url,
                    etl_scheduler_enabled=False, _env_file=None)


class Graveyard:
    """Drops databases in a background thread (a DROP DATABASE waits for a checkpoint, ~0.4 s):
    the next example runs meanwhile; the test waits for every drop at its end."""

    def __init__(self) -> None:
        self.pool = ThreadPoolExecutor(max_workers=2)
        self.pending: list[Future[None]] = []

    def bury(self, url: str) -> None:
        self.pending.append(self.pool.submit(asyncio.run, drop_database(url)))

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        for done in self.pending:
            done.result()


@pytest.fixture
def graveyard() -> Iterator[Graveyard]:
    g = Graveyard()
    yield g
    g.close()


async def check_history(history: History, robust_template: str, graveyard: Graveyard) -> None:
    robust_url = await new_robust_database(robust_template)
    # JIT compiling the statements' queries costs ~0.5 s a query on databases this small
    await admin(f"ALTER DATABASE {robust_url.rsplit('/', 1)[1]} SET jit = off")
    operation_url = await new_operation_database()
    fresh: str | None = None
    try:
        settings = make_settings(robust_url, operation_url)
        tz = settings.timezone
        cov = await play(history, settings, robust_url, operation_url)
        months = (month_start(history.steps[0].now.astimezone(TZ).date()),
                  month_start(history.steps[-1].now.astimezone(TZ).date()))

        incremental = await fetch(robust_url, LEDGER)
        users = {r[1] for r in incremental}
        event(f"users validated: {len(users)}, covered: {len(users - set(cov.excluded))}")
        event(f"ETL runs: {cov.runs}")
        fresh = await fresh_recompute(settings, robust_template, robust_url, operation_url)
        recomputed = await fetch(fresh, LEDGER)
        problems = differences("incremental ledger", covered(incremental, cov), covered(recomputed, cov),
                               "fresh recompute")
        problems += await by_the_rules(robust_url, operation_url, incremental, cov, tz)
        problems += differences("incremental daily REV", await fetch(robust_url, DAILY_REV),
                                await fetch(fresh, DAILY_REV), "fresh recompute")
        problems += await check_statements(robust_url, tz, *months)

        result = await run_cycle(settings, robust_url, operation_url, full=True)
        assert result.status == "success"
        problems += differences("ledger after --full", covered(await fetch(robust_url, LEDGER), cov),
                                covered(recomputed, cov), "fresh recompute")
        problems += [f"after --full: {p}" for p in await check_statements(robust_url, tz, *months)]

        validated = ", ".join(f"{u} by run {r} at {t.astimezone(TZ):%Y-%m-%d %H:%M}"
                              for u, (r, t) in sorted(cov.validated.items()))
        excluded = "".join(f"\n  {u}: {why}" for u, why in sorted(cov.excluded.items()))
        assert not problems, ("\n".join(problems) + f"\n{cov.runs} ETL runs; validated: {validated or 'nobody'}"
                              f"\nnot covered:{excluded or ' nobody'}")
    finally:
        for url in (robust_url, operation_url, fresh):
            if url is not None:
                graveyard.bury(url)


# ---------------------------------------------------------------------------- issue 14's cases

VIP = (("70.00", "20.00", "10.00", "5.00", "5.00"), ("0.30", "0.10", "0.05", "0.03", "0.02"))

# 1. Criteria are judged at t*: stricter criteria scheduled on Nov 20 do not make the October
# activity (deposit 100, 60 staked on two days) qualify, nor does today's bet (the old criteria
# judge today); a second version on Nov 25 changes nothing of it either.
ITEM_1 = (Script().user("2025-10-01 09:00", 1, flagged=True).user("2025-10-01 09:00", 2, 1)
          .play("2025-10-05 10:00", 2, "100.00", "30.00").play("2025-10-06 10:00", 2, None, "30.00")
          .etl("2025-10-07 10:00")
          .criteria("2025-11-20 10:00", "2025-11-21", "100.00", "50.00", 2)
          .play("2025-11-20 11:00", 2, None, "10.00").etl("2025-11-20 12:00")
          .criteria("2025-11-25 10:00", "2025-11-26", "100.00", "200.00", 2).etl("2025-11-26 10:00")
          .history())

# 2. Laxer criteria from Oct 11: a user whose activity (Oct 5) does not change is not validated
# by them (a version never judges instants before its date), by incremental runs or a recompute.
ITEM_2 = (Script().user("2025-10-01 09:00", 1, flagged=True).user("2025-10-01 09:00", 2, 1)
          .play("2025-10-05 10:00", 2, "50.00", "60.00").etl("2025-10-06 10:00")
          .criteria("2025-10-10 10:00", "2025-10-11", "30.00", "50.00", 1)
          .etl("2025-10-12 10:00").etl("2025-10-13 10:00")
          .history())

# 3. A 10-day window: the user referred on Oct 1 who meets the thresholds on Oct 20 is not paid;
# another who meets them inside the window is.
ITEM_3 = (Script().criteria("2025-09-27 10:00", "2025-09-28", "30.00", "100.00", 2, 10)
          .user("2025-10-01 09:00", 1, flagged=True).user("2025-10-01 09:00", 2, 1).user("2025-10-01 09:00", 3, 1)
          .play("2025-10-02 10:00", 2, "50.00", "50.00").play("2025-10-02 10:00", 3, "50.00", "50.00")
          .play("2025-10-05 10:00", 3, None, "60.00").etl("2025-10-06 10:00")
          .play("2025-10-20 10:00", 2, None, "60.00").etl("2025-10-21 10:00")
          .history())

# 4. A plan assigned today prices from tomorrow: player 2 qualified this morning (CPA 50),
# player 3 qualifies tomorrow under the new plan (CPA 70); REV today stays at 25%.
ITEM_4 = (Script().user("2025-11-01 09:00", 1, flagged=True).user("2025-11-01 09:00", 2, 1)
          .user("2025-11-01 09:00", 3, 1)
          .play("2025-11-10 09:00", 2, "30.00", "50.00").play("2025-11-10 09:00", 3, "30.00", "50.00")
          .play("2025-11-20 08:00", 2, None, "50.00").etl("2025-11-20 09:00")
          .plan("2025-11-20 10:00", 1, *VIP).assign("2025-11-20 10:00", 1, 1)
          .play("2025-11-20 12:00", 2, None, "100.00").etl("2025-11-20 13:00")
          .play("2025-11-21 08:00", 3, None, "100.00").etl("2025-11-21 09:00").etl("2025-11-22 09:00")
          .history())


@example(history=ITEM_1)
@example(history=ITEM_2)
@example(history=ITEM_3)
@example(history=ITEM_4)
@hsettings(max_examples=examples(20), **PROFILE)
@given(history=histories(min_steps=15, max_steps=50))
def test_when_the_etl_runs_never_matters(
    history: History, robust_template: str, graveyard: Graveyard, clock: Callable[[Any], None]
) -> None:
    asyncio.run(check_history(history, robust_template, graveyard))


@pytest.mark.slow
@hsettings(max_examples=examples(50), **PROFILE)
@given(history=histories(min_steps=30, max_steps=80))
def test_when_the_etl_runs_never_matters_in_longer_histories(
    history: History, robust_template: str, graveyard: Graveyard, clock: Callable[[Any], None]
) -> None:
    asyncio.run(check_history(history, robust_template, graveyard))

