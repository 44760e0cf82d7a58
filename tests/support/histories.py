"""Random histories of source events and configuration changes, played step by step against
real databases with the ETL run after random steps (issue 14's property test,
tests/etl/test_when_the_etl_runs.py).

A ``History`` is a list of ``Step``s drawn up front by ``histories()`` from a small model of
the program (who is registered, who refers whom, which deposits are pending, which plans exist,
which affiliates the last ETL run saw, which months are closed). Each step happens at the
process clock's instant (db/clock.py), which only moves forward:

* source events, written the way the operator's system writes them (``atualizado_em`` is the
  commit instant, the clock): users, referrals (``track``), moved referrals, deposits approved
  or pending (approved or cancelled later: ``set_status``), bets, withdrawals. Business
  instants are at or before the clock: bets up to 5 minutes late (the source contract's commit
  lag; the bets' cursor is their own timestamp), deposits and referrals hours to days late
  (their cursor is ``atualizado_em``); the clock is often moved to just before or after local
  midnight (America/Sao_Paulo, with Brazil's DST start and end of 2018-19 among the bases);
* configuration changes through the commissions API at the clock's "today", effective tomorrow
  at the earliest: criteria (zero thresholds and windows included), plans, plan versions, plan
  assignments;
* an ETL cycle; closing a past month.

``play`` runs a history and keeps what the invariant of METRICS.md ("when the ETL runs never
matters") needs: which run validated each user first (and its t*), and which users it no longer
covers. A user validated by run k is left out when, after run k,
- one of its own rows dated at or before its t* was inserted or changed (a late deposit, its
  approval or cancellation, a late bet): only activity at or before t* decides t* and the
  snapshot, so its rows dated after t* cannot change them and keep it covered;
- an edge of its upline chain changed: a referral tracked or moved, or a referrer that
  registered (its edges became usable); conservatively the user concerned and everyone below
  it, before and after the change.
Users the incremental runs never validated are always covered: the last run saw everything.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
from hypothesis import strategies as st

from commissions import service
from commissions.inputs import PlanTerms, QualificationTerms
from db import clock
from db.settings import Settings
from etl.sync import run_cycle
from tests.support.factories import Operation

TZ = ZoneInfo("America/Sao_Paulo")
GHOST = 999  # a referrer that never registers
ACTOR = "property"

# Local midnights to start from: an ordinary spring (UTC-3 all year since 2019); Brazil's DST
# start (2018-11-04: local 00:00 skipped) and end (2019-02-17: 23:00-00:00 repeated).
BASES = (
    datetime(2025, 9, 20, tzinfo=TZ),
    datetime(2018, 10, 20, tzinfo=TZ),
    datetime(2019, 1, 25, tzinfo=TZ),
)
MAX_SPAN = timedelta(days=120)

MINUTE, HOUR, DAY = timedelta(minutes=1), timedelta(hours=1), timedelta(days=1)
ADVANCES: tuple[timedelta | str, ...] = (
    timedelta(0), MINUTE, 5 * MINUTE, HOUR, 4 * HOUR, 10 * HOUR, DAY, DAY, 2 * DAY, 3 * DAY,
    5 * DAY, 8 * DAY, "before midnight", "midnight", "midnight",
)
DEPOSIT_LATENESS = (timedelta(0),) * 4 + (30 * MINUTE, 6 * HOUR, DAY, 4 * DAY, 15 * DAY)
BET_LATENESS = (timedelta(0),) * 4 + (MINUTE, 5 * MINUTE)
DEPOSITS = ("10.00", "29.99", "30.00", "50.00", "100.00")
STAKES = ("10.00", "50.00", "60.00", "100.00")
WINS = ("0.00", "0.00", "20.00", "75.00", "300.00")

D = Decimal
CPA_SETS = (
    ("50.00", "20.00", "10.00", "5.00", "5.00"),
    ("70.00", "20.00", "10.00", "5.00", "5.00"),
    ("0.00", "0.00", "0.00", "0.00", "0.00"),
    ("33.33", "1.00", "1.00", "1.00", "1.00"),
)
REV_SETS = (
    ("0.25", "0.10", "0.05", "0.03", "0.02"),
    ("0.30", "0.10", "0.05", "0.03", "0.02"),
    ("0", "0", "0", "0", "0"),
    ("0.5", "0.2", "0.1", "0.05", "0.05"),
)


def local(t: datetime) -> str:
    return t.astimezone(TZ).strftime("%Y-%m-%d %H:%M%z")


def local_midnight(day: date) -> datetime:
    """The first instant of a local day (the skipped 00:00 of a DST start is 01:00)."""
    return datetime.combine(day, time(0), TZ).astimezone(UTC).astimezone(TZ)


def month_start(day: date) -> date:
    return day.replace(day=1)


def add_months(month: date, n: int) -> date:
    i = month.year * 12 + month.month - 1 + n
    return date(i // 12, i % 12 + 1, 1)


# ---------------------------------------------------------------------------- the history


@dataclass(frozen=True)
class Step:
    now: datetime  # the clock when it happens (aware)
    kind: str
    args: tuple[Any, ...]

    def __repr__(self) -> str:
        return f"{local(self.now)} {self.kind}{_show(self.args)}"

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:  # how Hypothesis prints it
        p.text(repr(self))


def _show(value: Any) -> str:
    if isinstance(value, datetime):
        return local(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, tuple):
        return "(" + ", ".join(_show(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    return repr(value)


@dataclass
class History:
    steps: list[Step]

    def __repr__(self) -> str:
        return "History([\n" + "".join(f"  {s!r},\n" for s in self.steps) + "])"

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(repr(self))


@dataclass
class _Model:
    """What the generator knows while drawing: enough to draw only steps that make sense."""

    now: datetime
    registered: dict[int, datetime] = field(default_factory=dict)
    tracked: dict[int, int] = field(default_factory=dict)
    flagged: set[int] = field(default_factory=set)
    deposits: dict[int, tuple[int, datetime, str]] = field(default_factory=dict)
    plans: int = 0  # custom plans created (plan 0 is the default)
    affiliates: set[int] = field(default_factory=set)  # as the last ETL run saw them
    closed: date | None = None
    next_row: int = 1

    def row_id(self) -> int:
        self.next_row += 1
        return self.next_row

    def today(self) -> date:
        return self.now.astimezone(TZ).date()

    def seen_affiliates(self) -> set[int]:
        usable = {r for u, r in self.tracked.items()
                  if u != r and u in self.registered and r in self.registered}
        return self.flagged | usable


def _plan_terms(draw: st.DrawFn) -> tuple[Any, ...]:
    return (draw(st.sampled_from(CPA_SETS)), draw(st.sampled_from(REV_SETS)), draw(st.booleans()),
            draw(st.sampled_from(("0.00", "0.00", "50.00", "300.00"))))


def _effective(draw: st.DrawFn, m: _Model) -> date:
    return m.today() + timedelta(days=1 + draw(st.sampled_from((0, 0, 0, 1, 6))))


# Step kinds by weight: mostly players' sessions, registrations and ETL runs.
KINDS = ("wait",) + (("play",) * 16 + ("user",) * 2 + ("etl",) * 6 + ("deposit",) * 3 + ("set_status",) * 2
                     + ("criteria",) * 3 + ("close",) * 3 + ("workflow",) * 2
                     + ("version",) * 2 + ("track", "move", "withdrawal", "plan", "assign"))


@st.composite
def histories(draw: st.DrawFn, min_steps: int = 5, max_steps: int = 45,
              min_users: int = 5, max_users: int = 15) -> History:
    """5-15 users (a few affiliates among them) over up to 4 local months, ending with an ETL run."""
    base = draw(st.sampled_from(BASES))
    users = draw(st.lists(st.integers(1, 60), min_size=min_users, max_size=max_users, unique=True))
    m = _Model(now=base.astimezone(UTC) + timedelta(hours=draw(st.sampled_from((9, 12, 20)))))
    steps: list[Step] = []
    for _ in range(draw(st.integers(min_steps, max_steps))):
        advance = draw(st.sampled_from(ADVANCES))
        if advance == "before midnight":
            m.now = local_midnight(m.today() + DAY) - draw(st.sampled_from((MINUTE, 2 * MINUTE)))
        elif advance == "midnight":
            m.now = local_midnight(m.today() + DAY) + draw(st.sampled_from((timedelta(0), MINUTE, 4 * MINUTE)))
        else:
            assert isinstance(advance, timedelta)
            m.now += advance
        if m.now > base + MAX_SPAN:
            break
        unregistered = [u for u in users if u not in m.registered]
        # everyone registers early on, about two steps in three
        early = unregistered and len(m.registered) < 2 + len(steps) * 2 // 3
        kind = "user" if early else draw(st.sampled_from(KINDS))  # "wait" (first: what shrinking
        # tends to) only moves the clock
        step = _draw_step(draw, m, kind, users, unregistered)
        if step is not None:
            steps.append(step)
    m.now += DAY
    steps.append(Step(m.now, "etl", ()))  # the last run sees everything
    return History(steps)


def _bets(draw: st.DrawFn, m: _Model, u: int) -> tuple[tuple[Any, ...], ...]:
    """One to three bets of ``u`` about now (a bet commits up to 5 minutes after its instant)."""
    at = max(m.registered[u], m.now - draw(st.sampled_from(BET_LATENESS)))
    bets = []
    for _ in range(draw(st.integers(1, 3))):
        bets.append((m.row_id(), draw(st.sampled_from(STAKES)), draw(st.sampled_from(WINS)), at))
        at = min(m.now, at + draw(st.sampled_from((timedelta(0), MINUTE))))
    return tuple(bets)


def _draw_step(draw: st.DrawFn, m: _Model, kind: str, users: list[int],
               unregistered: list[int]) -> Step | None:
    now = m.now
    active = sorted(m.registered)
    # activity: mostly of a few users with a referrer (CPA is paid for them), so that some qualify
    referred = sorted((u for u in m.registered if m.tracked.get(u) in m.registered and m.tracked[u] != u),
                      key=m.registered.__getitem__)
    if kind in ("play", "deposit", "withdrawal"):
        who = draw(st.integers(0, 9))
        player = draw(st.sampled_from(referred[:3] if referred and who < 6 else
                                      referred if referred and who < 9 else active))
    if kind == "wait":
        return None
    if kind == "user":
        if not unregistered:
            return None
        u = unregistered[0]
        flagged = draw(st.integers(0, 9)) < 3
        # signed up through a link: mostly the last user's (deep chains), or anyone's, or that
        # of someone who registers later, or a referrer who never will; or none (yet)
        choice = draw(st.sampled_from(("last",) * 4 + ("any",) * 2 + ("later", "ghost", "none", "none")))
        referrer = {"last": active[-1], "any": draw(st.sampled_from(active)) if active else None,
                    "later": unregistered[-1] if len(unregistered) > 1 else None, "ghost": GHOST,
                    "none": None}[choice] if active else None
        m.registered[u] = now
        if flagged:
            m.flagged.add(u)
        if referrer is not None:
            m.tracked[u] = referrer
        return Step(now, "user", (u, flagged, referrer))
    if kind == "track":  # a referral recorded late
        free = [u for u in active if u not in m.tracked]
        if not free:
            return None
        # mostly someone nobody is referred by: a chain's top changes the upline of all below it
        leaves = [u for u in free if u not in m.tracked.values()]
        u = draw(st.sampled_from(leaves if leaves and draw(st.integers(0, 2)) > 0 else free))
        referrer = draw(st.sampled_from(active * 3 + users + [GHOST, u]))
        at = max(m.registered[u], now - draw(st.sampled_from(DEPOSIT_LATENESS)))
        m.tracked[u] = referrer
        return Step(now, "track", (u, referrer, at))
    if kind == "move":
        if not m.tracked:
            return None
        u = draw(st.sampled_from(sorted(m.tracked)))
        referrer = draw(st.sampled_from(users))
        m.tracked[u] = referrer
        return Step(now, "move", (u, referrer))
    if kind == "play":  # a session: maybe a deposit, then bets
        deposit = None
        if draw(st.integers(0, 4)) < 3:
            status = draw(st.sampled_from(("aprovado",) * 5 + ("pendente",)))
            deposit = (m.row_id(), draw(st.sampled_from(DEPOSITS)), now, status)
            m.deposits[deposit[0]] = (player, now, status)
        return Step(now, "play", (player, deposit, _bets(draw, m, player)))
    if kind in ("deposit", "withdrawal"):  # often committed late, or pending
        at = max(m.registered[player], now - draw(st.sampled_from(DEPOSIT_LATENESS)))
        rid, amount = m.row_id(), draw(st.sampled_from(DEPOSITS))
        if kind == "withdrawal":
            return Step(now, "withdrawal", (rid, player, amount, at))
        status = draw(st.sampled_from(("aprovado", "pendente")))
        m.deposits[rid] = (player, at, status)
        return Step(now, "deposit", (rid, player, amount, at, status))
    if kind == "set_status":
        pending = [r for r, (_, _, s) in m.deposits.items() if s == "pendente"]
        if pending and draw(st.integers(0, 4)) > 0:
            rid = draw(st.sampled_from(pending))
            status = draw(st.sampled_from(("aprovado", "aprovado", "cancelado")))
        elif m.deposits:
            rid = draw(st.sampled_from(sorted(m.deposits)))
            status = draw(st.sampled_from(("aprovado", "pendente", "cancelado")))
        else:
            return None
        u, at, _ = m.deposits[rid]
        m.deposits[rid] = (u, at, status)
        return Step(now, "set_status", (rid, u, at, status))
    if kind == "criteria":
        window = draw(st.sampled_from((None,) * 6 + (1, 7, 30)))
        terms = (draw(st.sampled_from(("0.00", "10.00", "30.00", "30.00", "100.00"))),
                 draw(st.sampled_from(("0.00", "50.00", "100.00", "100.00", "200.00"))),
                 draw(st.sampled_from((0, 1, 2, 2, 3))), window)
        return Step(now, "criteria", (_effective(draw, m), *terms))
    if kind == "plan":
        m.plans += 1
        return Step(now, "plan", (m.plans, *_plan_terms(draw)))
    if kind == "version":
        plan = draw(st.integers(0, m.plans))
        return Step(now, "version", (plan, _effective(draw, m), *_plan_terms(draw)))
    if kind == "assign":
        if not m.affiliates:
            return None
        affiliate = draw(st.sampled_from(sorted(m.affiliates)))
        plan = draw(st.integers(0, m.plans))
        start = None if draw(st.booleans()) else _effective(draw, m)
        return Step(now, "assign", (affiliate, plan, start))
    if kind == "etl":
        m.affiliates = m.seen_affiliates()
        return Step(now, "etl", ())
    if kind == "workflow":  # on what exists when it runs: the index-th closed statement, ...
        if m.closed is None:
            return None
        return Step(now, "workflow", (draw(st.sampled_from(("approve", "pay", "reject"))), draw(st.integers(0, 9))))
    if kind == "close":
        first = add_months(m.closed, 1) if m.closed else month_start(min(m.registered.values()).astimezone(TZ).date())
        last = add_months(month_start(m.today()), -1)
        if first > last:
            return None
        months = [first]
        while months[-1] < last:
            months.append(add_months(months[-1], 1))
        m.closed = draw(st.sampled_from(months))
        return Step(now, "close", (m.closed,))
    raise AssertionError(kind)  # pragma: no cover


class Script:
    """A hand-written history in the generator's steps (the cases of issue 14 as explicit
    examples): ``when`` is local time, "2025-11-20 10:00"; row ids are given in order."""

    def __init__(self) -> None:
        self.steps: list[Step] = []
        self.ids = itertools.count(1)

    @staticmethod
    def at(when: str) -> datetime:
        return datetime.fromisoformat(when).replace(tzinfo=TZ)

    def add(self, when: str, kind: str, *args: Any) -> Script:
        self.steps.append(Step(self.at(when), kind, args))
        return self

    def user(self, when: str, u: int, referrer: int | None = None, *, flagged: bool = False) -> Script:
        return self.add(when, "user", u, flagged, referrer)

    def play(self, when: str, u: int, deposit: str | None, *stakes: str, status: str = "aprovado") -> Script:
        """A session: a deposit (None: none), then bets of these stakes (no win), all at ``when``."""
        now = self.at(when)
        dep = (next(self.ids), deposit, now, status) if deposit is not None else None
        bets = tuple((next(self.ids), stake, "0.00", now) for stake in stakes)
        return self.add(when, "play", u, dep, bets)

    def criteria(self, when: str, effective: str, deposits: str, stake: str, days: int,
                 window: int | None = None) -> Script:
        return self.add(when, "criteria", date.fromisoformat(effective), deposits, stake, days, window)

    def plan(self, when: str, index: int, cpa: tuple[str, ...], rev: tuple[str, ...],
             carryover: bool = True, min_payout: str = "0.00") -> Script:
        return self.add(when, "plan", index, cpa, rev, carryover, min_payout)

    def assign(self, when: str, affiliate: int, plan: int, effective: str | None = None) -> Script:
        return self.add(when, "assign", affiliate, plan, date.fromisoformat(effective) if effective else None)

    def etl(self, when: str) -> Script:
        return self.add(when, "etl")

    def history(self) -> History:
        return History(list(self.steps))


# ---------------------------------------------------------------------------- playing it


@dataclass
class Coverage:
    """Who the invariant covers after a played history (see the module's docstring)."""

    runs: int = 0
    validated: dict[int, tuple[int, datetime]] = field(default_factory=dict)  # user -> (run, t*)
    own_changes: list[tuple[int, int, datetime]] = field(default_factory=list)  # (user, after run, dated)
    chain_changes: list[tuple[int, frozenset[int], str]] = field(default_factory=list)
    excluded: dict[int, str] = field(default_factory=dict)

    def exclude(self) -> dict[int, str]:
        """The users left out, each with why."""
        out: dict[int, str] = {}
        for user, epoch, dated in self.own_changes:
            run, t_star = self.validated.get(user, (None, None))
            if run is not None and t_star is not None and epoch >= run and dated <= t_star:
                out.setdefault(user, f"a row dated {local(dated)} <= t* {local(t_star)} changed after run {run}")
        for epoch, affected, what in self.chain_changes:
            for user in affected:
                run, _ = self.validated.get(user, (None, None))
                if run is not None and epoch >= run:
                    out.setdefault(user, f"{what} after run {run}, its validating run")
        return out


def _below(tracked: dict[int, int], top: int) -> set[int]:
    """``top`` and every user whose referral chain reaches it (any tracked row, usable or not)."""
    children: dict[int, set[int]] = defaultdict(set)
    for u, r in tracked.items():
        children[r].add(u)
    seen, todo = {top}, [top]
    while todo:
        for c in children[todo.pop()]:
            if c not in seen:
                seen.add(c)
                todo.append(c)
    return seen


def _terms(cpa: tuple[str, ...], rev: tuple[str, ...], carryover: bool, min_payout: str) -> PlanTerms:
    return PlanTerms([D(x) for x in cpa], [D(x) for x in rev], carryover, D(min_payout))


async def _workflow(conn: asyncpg.Connection, action: str, index: int) -> None:
    """Approve the index-th closed statement (by month, affiliate), pay the index-th closed or
    approved one (approving it first), or reject the index-th validation not rejected (by id; a
    paid one is a chargeback); nothing when there is none."""
    if action == "reject":
        ids = [r["id"] for r in await conn.fetch(
            "SELECT id FROM affiliate_cpa_validations WHERE cpa_status <> 'rejected' ORDER BY id")]
        if ids:
            await service.reject_validation(conn, ids[index % len(ids)], "property test", ACTOR)
        return
    statuses = ["closed"] if action == "approve" else ["closed", "approved"]
    found = await conn.fetch("SELECT affiliate_id, month, status FROM commission_statements "
                             "WHERE status = ANY($1::text[]) ORDER BY month, affiliate_id", statuses)
    if found:
        affiliate, month, status = found[index % len(found)]
        if status == "closed":
            await service.approve_statement(conn, affiliate, month, ACTOR)
        if action == "pay":
            await service.mark_statement_paid(conn, affiliate, month, f"ref {affiliate} {month}", ACTOR)


async def play(history: History, settings: Settings, robust_url: str, operation_url: str) -> Coverage:
    """Run ``history`` step by step (the clock set at each step); the coverage it leaves."""
    tz = settings.timezone
    cov = Coverage()
    tracked: dict[int, int] = {}
    plan_ids: dict[int, int] = {}
    op = await Operation.open(operation_url)
    conn = await asyncpg.connect(robust_url)
    try:
        plan_ids[0] = await conn.fetchval("SELECT id FROM commission_plans WHERE is_default")
        for step in history.steps:
            clock.set_now(step.now)
            now, a = step.now.isoformat(), step.args
            if step.kind == "user":
                u, flagged, referrer = a
                await op.user(u, afiliado=flagged, at=now)
                if referrer is not None:
                    await op.track(u, referrer, now, id=u)
                    tracked[u] = referrer
                # the edges of the users it referred became usable: their chains changed
                cov.chain_changes.append((cov.runs, frozenset(_below(tracked, u)), f"{u} registered"))
            elif step.kind == "track":
                u, referrer, at = a
                await op.track(u, referrer, at.isoformat(), id=u, updated=now)
                tracked[u] = referrer
                cov.chain_changes.append((cov.runs, frozenset(_below(tracked, u)), f"{u} tracked to {referrer}"))
            elif step.kind == "move":
                u, referrer = a
                before = _below(tracked, u)
                await op.move(u, referrer, now)
                tracked[u] = referrer
                cov.chain_changes.append((cov.runs, frozenset(before | _below(tracked, u)),
                                          f"{u} moved to {referrer}"))
            elif step.kind == "play":
                u, deposit, bets = a
                if deposit is not None:
                    rid, amount, at, status = deposit
                    await op.deposit(u, amount, at.isoformat(), status, id=rid, updated=now)
                    cov.own_changes.append((u, cov.runs, at))
                for rid, stake, win, at in bets:
                    await op.bet(u, stake, win, at.isoformat(), id=rid)
                    cov.own_changes.append((u, cov.runs, at))
            elif step.kind == "deposit":
                rid, u, amount, at, status = a
                await op.deposit(u, amount, at.isoformat(), status, id=rid, updated=now)
                cov.own_changes.append((u, cov.runs, at))
            elif step.kind == "set_status":
                rid, u, at, status = a
                await op.set_status("depositos", rid, status, now)
                cov.own_changes.append((u, cov.runs, at))
            elif step.kind == "withdrawal":
                rid, u, amount, at = a
                await op.withdrawal(u, amount, at.isoformat(), id=rid, updated=now)
                cov.own_changes.append((u, cov.runs, at))
            elif step.kind == "criteria":
                effective, deposits, stake, days, window = a
                await service.schedule_criteria(conn, tz, effective, QualificationTerms(
                    D(deposits), D(stake), days, window), ACTOR)
            elif step.kind == "plan":
                index, *terms = a
                plan = await service.create_plan(conn, tz, f"plan {index}", _terms(*terms), ACTOR)
                plan_ids[index] = plan.id
            elif step.kind == "version":
                index, effective, *terms = a
                await service.schedule_version(conn, tz, plan_ids[index], effective, _terms(*terms), ACTOR)
            elif step.kind == "assign":
                affiliate, index, effective = a
                await service.assign_plan(conn, tz, affiliate, plan_ids[index], ACTOR, effective_from=effective)
            elif step.kind == "etl":
                result = await run_cycle(settings, robust_url, operation_url)
                assert result.status == "success", result
                cov.runs += 1
                for row in await conn.fetch("SELECT referred_user_id, min(validation_date) AS t "
                                            "FROM affiliate_cpa_validations GROUP BY 1"):
                    cov.validated.setdefault(row["referred_user_id"], (cov.runs, row["t"]))
            elif step.kind == "close":
                await service.close_month(conn, tz, a[0], ACTOR)
            elif step.kind == "workflow":
                await _workflow(conn, *a)
            else:  # pragma: no cover
                raise AssertionError(step.kind)
    finally:
        await op.close()
        await conn.close()
    cov.excluded = cov.exclude()
    return cov
