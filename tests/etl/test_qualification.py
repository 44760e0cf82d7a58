"""CPA qualification (METRICS.md, "CPA qualification"; issue 14 items 1-3): each instant is judged
by the criteria version in force on its local date, never by the one in force when the ETL runs;
a version's window counts only [referral, referral + N x 24 h); a criteria change reaches the
unvalidated users active on or after its date; incremental runs, --full and a fresh recompute
with the same configuration history write the same validations; and the ledger equals the
oracle's reading of the rules (tests/etl/oracle.py) on random histories and criteria."""

from __future__ import annotations

import json
import os
import random
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal as D

import asyncpg
import pytest

from commissions import service
from commissions.inputs import QualificationTerms
from tests.etl import oracle
from tests.support.databases import drop_database, new_robust_database
from tests.support.factories import Operation, etl, fetch
from tests.support.recompute import fresh_recompute, ledger


async def schedule(settings, robust_url: str, effective_from: str, deposits: str, stake: str, days: int,
                   window: int | None = None) -> None:
    """Criteria through the API's rule (tomorrow at the earliest, on the process clock)."""
    conn = await asyncpg.connect(robust_url)
    try:
        await service.schedule_criteria(conn, settings.timezone, date.fromisoformat(effective_from),
                                        QualificationTerms(D(deposits), D(stake), days, window), "admin")
    finally:
        await conn.close()


async def add_criteria(robust_url: str, effective_from: str, deposits: str, stake: str, days: int,
                       window: int | None = None) -> None:
    """A criteria version written straight into the table (any date; the trigger queues it)."""
    conn = await asyncpg.connect(robust_url)
    try:
        await conn.execute(
            "INSERT INTO qualification_criteria_versions (effective_from, min_deposits, min_stake,"
            " min_active_days, window_days) VALUES ($1, $2, $3, $4, $5)",
            date.fromisoformat(effective_from), D(deposits), D(stake), days, window)
    finally:
        await conn.close()


async def validated(robust_url: str) -> dict[int, tuple]:
    """user -> (t* ISO in UTC, deposits, stake, active days, the judging version's
    (min deposits, min stake, min days, window days)) of its level-1 validation."""
    rows = await fetch(
        robust_url,
        "SELECT referred_user_id, validation_date, user_deposits, user_bets, days_active, "
        "validation_criteria::text AS criteria FROM affiliate_cpa_validations WHERE cpa_level = 1")
    out = {}
    for r in rows:
        c = json.loads(r["criteria"])
        out[r["referred_user_id"]] = (
            r["validation_date"].astimezone(UTC).isoformat(), r["user_deposits"], r["user_bets"],
            r["days_active"], (D(c["min_deposits"]), D(c["min_stake"]), c["min_active_days"], c["window_days"]))
    return out


async def assert_runs_agree(settings, robust_template, robust_url, operation_url) -> list[tuple]:
    """--full writes nothing new, a fresh full recompute writes the same ledger, and both
    equal the oracle's ledger with the same criteria history; returns the ledger."""
    incremental = await ledger(robust_url)
    assert (await etl(settings, robust_url, operation_url, full=True)).validations == 0
    assert await ledger(robust_url) == incremental
    fresh = await fresh_recompute(settings, robust_template, robust_url, operation_url)
    try:
        assert await ledger(fresh) == incremental
        assert await validated(fresh) == await validated(robust_url)
    finally:
        await drop_database(fresh)
    src = await oracle.read_source(operation_url)
    criteria = await oracle.read_criteria(robust_url)
    want = oracle.expected(src, None, settings.timezone, criteria).validations
    got = (await oracle.read_robust(robust_url))["affiliate_cpa_validations"]
    assert got == want, oracle.diff({"affiliate_cpa_validations": want}, {"affiliate_cpa_validations": got})
    return incremental


DEFAULT = (D("30.00"), D("100.00"), 2, None)


async def test_criteria_scheduled_later_judge_only_instants_from_their_date(
    op, settings, robust_url, operation_url, robust_template, clock
):
    """Issue 14 item 1 (a): criteria {deposits >= 100, stake >= 50, days >= 2} scheduled on Nov 19
    (from Nov 20). Player 2 (deposit 100, 60 staked over two October days) meets them on its
    October activity, but October is judged by the old criteria (stake 60 < 100): it validates at
    its bet of Nov 20, the first instant the new ones judge. Players 3 and 4 qualify in October
    under the old criteria (deposit 30 < 100 under the new): 3 is validated before the change;
    4 gets its referral (its upline) only on Nov 20: both in October, by the old version."""
    await op.user(1, afiliado=True)
    for player in (2, 3, 4):
        await op.user(player)
    for player in (2, 3):
        await op.track(player, 1, "2025-10-01 12:00Z")
    await op.deposit(2, "100.00", "2025-10-05 12:00Z")
    await op.bet(2, "30.00", "0.00", "2025-10-05 13:00Z")
    await op.bet(2, "30.00", "0.00", "2025-10-06 13:00Z")
    await op.deposit(3, "30.00", "2025-10-05 12:00Z")
    await op.bet(3, "50.00", "0.00", "2025-10-05 13:00Z")
    await op.bet(3, "50.00", "0.00", "2025-10-06 13:00Z")
    await op.deposit(4, "30.00", "2025-10-05 12:00Z")
    await op.bet(4, "50.00", "0.00", "2025-10-05 13:00Z")
    await op.bet(4, "50.00", "0.00", "2025-10-06 13:00Z")
    clock("2025-11-19T10:00:00-03:00")
    await etl(settings, robust_url, operation_url)
    assert await validated(robust_url) == {
        3: ("2025-10-06T13:00:00+00:00", D("30.00"), D("100.00"), 2, DEFAULT)}

    await schedule(settings, robust_url, "2025-11-20", "100.00", "50.00", 2)
    assert (await etl(settings, robust_url, operation_url)).validations == 0

    clock("2025-11-20T12:00:00-03:00")
    await op.track(4, 1, "2025-11-20 13:00Z")
    await op.bet(2, "10.00", "0.00", "2025-11-20 14:00Z")
    await etl(settings, robust_url, operation_url)
    new = (D("100.00"), D("50.00"), 2, None)
    assert await validated(robust_url) == {
        2: ("2025-11-20T14:00:00+00:00", D("100.00"), D("70.00"), 3, new),
        3: ("2025-10-06T13:00:00+00:00", D("30.00"), D("100.00"), 2, DEFAULT),
        4: ("2025-10-06T13:00:00+00:00", D("30.00"), D("100.00"), 2, DEFAULT),
    }
    await assert_runs_agree(settings, robust_template, robust_url, operation_url)


async def test_a_late_approval_qualifies_under_the_criteria_of_its_day(
    op, settings, robust_url, operation_url, robust_template, clock
):
    """Issue 14 item 1 (b): player 2's deposit of Nov 11 is approved on Nov 20, after stricter
    criteria took effect (Nov 13). It met the old criteria on Nov 11: validated with t* on Nov 11,
    judged by the old version."""
    await op.user(1, afiliado=True)
    await op.user(2)
    await op.track(2, 1, "2025-11-01 12:00Z")
    await op.bet(2, "50.00", "0.00", "2025-11-10 13:00Z")
    deposit = await op.deposit(2, "30.00", "2025-11-11 12:00Z", "pendente")
    await op.bet(2, "50.00", "0.00", "2025-11-11 13:00Z")
    clock("2025-11-12T10:00:00-03:00")
    await etl(settings, robust_url, operation_url)
    assert await validated(robust_url) == {}

    await schedule(settings, robust_url, "2025-11-13", "100.00", "500.00", 5)
    await etl(settings, robust_url, operation_url)
    clock("2025-11-20T10:00:00-03:00")
    await op.set_status("depositos", deposit, "aprovado", "2025-11-20 13:00Z")
    await etl(settings, robust_url, operation_url)
    assert await validated(robust_url) == {
        2: ("2025-11-11T13:00:00+00:00", D("30.00"), D("100.00"), 2, DEFAULT)}
    await assert_runs_agree(settings, robust_template, robust_url, operation_url)


async def test_incremental_full_and_fresh_recompute_agree_after_criteria_changes(
    op, settings, robust_url, operation_url, robust_template, clock
):
    """Issue 14 item 2 (c): a history of cycles with criteria changes in between (a laxer
    version, a stricter one with a window, and one written for a day the ETL already derived:
    a clock ahead of the source) ends in the ledger of --full and of a fresh full recompute."""
    await op.user(1, afiliado=True)
    for player in range(2, 10):
        await op.user(player)
        await op.track(player, 1 if player < 8 else player - 6, "2025-11-01 12:00Z")
    # Nov 2-5: nobody meets the default criteria (deposits below 30 or a single active day).
    for player in range(2, 10):
        await op.deposit(player, "20.00" if player % 2 else "40.00", "2025-11-02 12:00Z")
        await op.bet(player, "60.00", "0.00", "2025-11-02 13:00Z")
    await op.bet(9, "60.00", "0.00", "2025-11-04 13:00Z")  # deposits 20: not by the default
    clock("2025-11-05T10:00:00-03:00")
    await etl(settings, robust_url, operation_url)
    assert await validated(robust_url) == {}

    await schedule(settings, robust_url, "2025-11-06", "10.00", "50.00", 1)  # laxer
    await etl(settings, robust_url, operation_url)
    assert await validated(robust_url) == {}  # no instant on Nov 6 yet

    clock("2025-11-06T20:00:00-03:00")
    await op.bet(2, "1.00", "0.00", "2025-11-06 14:00Z")  # the laxer version's first instant
    await op.bet(3, "1.00", "0.00", "2025-11-06 15:00Z")
    await etl(settings, robust_url, operation_url)
    await schedule(settings, robust_url, "2025-11-08", "100.00", "300.00", 3, window=10)

    clock("2025-11-09T20:00:00-03:00")
    await op.bet(4, "1.00", "0.00", "2025-11-07 14:00Z")  # last day of the laxer version
    await op.deposit(5, "80.00", "2025-11-08 12:00Z")  # 5: 120 deposited, 3 days, 300 staked ...
    await op.bet(5, "120.00", "0.00", "2025-11-08 13:00Z")
    await op.bet(5, "120.00", "0.00", "2025-11-09 13:00Z")  # ... inside its window: t*
    await op.bet(6, "500.00", "0.00", "2025-11-12 13:00Z")  # 6: after its window (ends Nov 11 12:00Z)
    await op.deposit(6, "100.00", "2025-11-12 14:00Z")
    await op.bet(6, "1.00", "0.00", "2025-11-13 13:00Z")
    await op.bet(9, "60.00", "0.00", "2025-11-10 15:00Z")  # 9: deposits 20 in its window: no
    await etl(settings, robust_url, operation_url)
    assert set(await validated(robust_url)) == {2, 3, 4, 5}
    assert (await validated(robust_url))[5] == (
        "2025-11-09T13:00:00+00:00", D("100.00"), D("300.00"), 3, (D("100.00"), D("300.00"), 3, 10))

    # A version for a day the ETL has derived already (no API allows it: a clock ahead of the
    # source), after every t* so far: 6 and 9, unvalidated and active from Nov 10 on, are
    # reconsidered and qualify at their first event from Nov 10; 7 and 8 (not active since
    # Nov 2) do not.
    await add_criteria(robust_url, "2025-11-10", "0.00", "0.00", 0)
    assert (await etl(settings, robust_url, operation_url)).validations == 3  # 6; 9 at levels 1, 2
    zero = (D("0.00"), D("0.00"), 0, None)
    got = await validated(robust_url)
    assert got[6] == ("2025-11-12T13:00:00+00:00", D("40.00"), D("560.00"), 2, zero)
    assert got[9] == ("2025-11-10T15:00:00+00:00", D("20.00"), D("180.00"), 3, zero)
    rows = await assert_runs_agree(settings, robust_template, robust_url, operation_url)
    assert len(rows) == 7


async def test_a_window_counts_only_referral_to_referral_plus_n_times_24_hours(
    op, settings, robust_url, operation_url, robust_template
):
    """Issue 14 item 3 (d): the default criteria with a 10-day window. The window of a referral
    at 2018-11-01 15:00Z (12:00 local) ends 240 hours later, 2018-11-11 15:00Z: 13:00 local, as
    the clocks moved forward on Nov 4 (ten local days would end at 14:00Z)."""
    await add_criteria(robust_url, "2018-10-01", "30.00", "100.00", 2, window=10)
    await op.user(1, afiliado=True)
    for player in range(2, 8):
        await op.user(player)
        await op.track(player, 1, "2018-11-01 15:00Z")
    events = [
        # 2 qualifies on day 9.
        ("deposit", 2, "30.00", "2018-11-02 12:00Z"),
        ("bet", 2, "60.00", "2018-11-02 13:00Z"),
        ("bet", 2, "40.00", "2018-11-10 13:00Z"),
        # 3 qualifies 19 days after its referral: never.
        ("deposit", 3, "30.00", "2018-11-02 12:00Z"),
        ("bet", 3, "60.00", "2018-11-02 13:00Z"),
        ("bet", 3, "40.00", "2018-11-20 13:00Z"),
        # 4 would qualify exactly at the window's end, which is outside it: never.
        ("deposit", 4, "30.00", "2018-11-05 12:00Z"),
        ("bet", 4, "50.00", "2018-11-01 16:00Z"),
        ("bet", 4, "49.99", "2018-11-11 14:59:59Z"),
        ("bet", 4, "0.01", "2018-11-11 15:00:00Z"),
        # 5 qualifies half an hour before the window's end (12:30 local).
        ("deposit", 5, "30.00", "2018-11-05 12:00Z"),
        ("bet", 5, "50.00", "2018-11-01 16:00Z"),
        ("bet", 5, "50.00", "2018-11-11 14:30Z"),
        # 6: activity before its referral (the same local day) is not counted; it qualifies on
        # the window's activity alone, and its snapshot counts that only.
        ("deposit", 6, "30.00", "2018-11-01 14:00Z"),
        ("bet", 6, "100.00", "2018-11-01 14:30Z"),
        ("bet", 6, "10.00", "2018-11-01 15:00Z"),  # at the referral instant: counted
        ("bet", 6, "10.00", "2018-11-02 13:00Z"),
        ("deposit", 6, "30.00", "2018-11-03 12:00Z"),
        ("bet", 6, "80.00", "2018-11-03 13:00Z"),
        ("bet", 6, "500.00", "2018-11-03 14:00Z"),
        # 7: only activity before its referral and after its window: never.
        ("deposit", 7, "30.00", "2018-11-01 14:00Z"),
        ("bet", 7, "100.00", "2018-11-01 14:59:59Z"),
        ("bet", 7, "100.00", "2018-11-12 13:00Z"),
    ]
    # The first load sees Nov 1 (the day of the referrals), an incremental cycle the rest.
    for batch in (lambda at: at <= "2018-11-01 16:00Z", lambda at: at > "2018-11-01 16:00Z"):
        for kind, player, amount, at in events:
            if batch(at):
                if kind == "deposit":
                    await op.deposit(player, amount, at)
                else:
                    await op.bet(player, amount, "0.00", at)
        await etl(settings, robust_url, operation_url)
    window = (D("30.00"), D("100.00"), 2, 10)
    assert await validated(robust_url) == {
        2: ("2018-11-10T13:00:00+00:00", D("30.00"), D("100.00"), 2, window),
        5: ("2018-11-11T14:30:00+00:00", D("30.00"), D("100.00"), 2, window),
        6: ("2018-11-03T13:00:00+00:00", D("30.00"), D("100.00"), 3, window),
    }
    await assert_runs_agree(settings, robust_template, robust_url, operation_url)


async def test_a_later_version_without_a_window_qualifies_what_a_window_did_not(
    op, settings, robust_url, operation_url, robust_template
):
    """Issue 14 item 3 (e): a 10-day window from Jan 1, no window from Mar 1 (same thresholds).
    Player 2 meets the criteria 20 days after its referral: not under the window; it validates
    at its first bet from Mar 1, counting all its activity. Player 3, not active since, does not.
    Each instant is judged by its own version: player 4, active on Feb 28 and Mar 1 local around
    midnight, validates at its first instant of Mar 1."""
    await add_criteria(robust_url, "2025-01-01", "30.00", "100.00", 2, window=10)
    await add_criteria(robust_url, "2025-03-01", "30.00", "100.00", 2)
    await op.user(1, afiliado=True)
    for player in (2, 3, 4):
        await op.user(player)
        await op.track(player, 1, "2025-01-05 12:00Z")
        await op.deposit(player, "30.00", "2025-01-06 12:00Z")
        await op.bet(player, "50.00", "0.00", "2025-01-07 12:00Z")
        await op.bet(player, "50.00", "0.00", "2025-01-25 12:00Z")
    await etl(settings, robust_url, operation_url)
    assert await validated(robust_url) == {}
    await op.bet(2, "1.00", "0.00", "2025-03-03 12:00Z")
    await op.bet(4, "1.00", "0.00", "2025-03-01 02:59:59Z")  # Feb 28, 23:59:59 local: windowed
    await op.bet(4, "1.00", "0.00", "2025-03-01 03:00:00Z")  # Mar 1, 00:00 local
    await etl(settings, robust_url, operation_url)
    plain = (D("30.00"), D("100.00"), 2, None)
    assert await validated(robust_url) == {
        2: ("2025-03-03T12:00:00+00:00", D("30.00"), D("101.00"), 3, plain),
        4: ("2025-03-01T03:00:00+00:00", D("30.00"), D("102.00"), 4, plain),
    }
    await assert_runs_agree(settings, robust_template, robust_url, operation_url)


async def test_a_criteria_change_reconsiders_unchanged_users_active_from_its_date(
    op, settings, robust_url, operation_url, robust_template
):
    """Issue 14 items 1-2 (f): a criteria version written for a day the ETL already derived is
    queued (etl.config_changes) and the next cycle, with nothing new in the source, reconsiders
    the unvalidated users active on or after its date: 2 qualifies at its bet of Nov 4; 3, active
    only before Nov 4, is still judged by the default criteria."""
    await op.user(1, afiliado=True)
    for player in (2, 3):
        await op.user(player)
        await op.track(player, 1, "2025-11-01 12:00Z")
        await op.deposit(player, "20.00", "2025-11-02 12:00Z")
        await op.bet(player, "60.00", "0.00", "2025-11-02 13:00Z")
    await op.bet(2, "60.00", "0.00", "2025-11-04 13:00Z")
    await op.bet(3, "60.00", "0.00", "2025-11-03 13:00Z")
    await etl(settings, robust_url, operation_url)
    assert await validated(robust_url) == {}

    await add_criteria(robust_url, "2025-11-04", "10.00", "100.00", 2)
    queued = await fetch(robust_url, "SELECT kind, effective_from::text FROM etl.config_changes")
    assert [tuple(r) for r in queued] == [("criteria", "2025-11-04")]
    result = await etl(settings, robust_url, operation_url)
    assert (result.mode, result.validations) == ("incremental", 1)
    assert await validated(robust_url) == {
        2: ("2025-11-04T13:00:00+00:00", D("20.00"), D("120.00"), 2, (D("10.00"), D("100.00"), 2, None))}
    assert await fetch(robust_url, "SELECT * FROM etl.config_changes") == []
    await assert_runs_agree(settings, robust_template, robust_url, operation_url)


# ---------------------------------------------------------------------------- random histories

# Local midnights (as UTC instants): an ordinary day, Brazil's DST start of 4 Nov 2018 (local
# 00:00 skipped) and DST end of 17 Feb 2019, a month end.
_BASES = (datetime(2018, 11, 1, 3, 0, tzinfo=UTC), datetime(2019, 2, 13, 2, 0, tzinfo=UTC),
          datetime(2025, 1, 29, 3, 0, tzinfo=UTC))
_MINUTES = (0, 1, 59, 60, 61, 719, 1379, 1380, 1439)  # around local midnight, noon, ...
_SCALE = float(os.environ.get("FATURE_PROPERTY_SCALE", "1"))


def _history(rng: random.Random) -> tuple[list[tuple], list[tuple], list[tuple]]:
    """(referrals, money and bets, criteria versions) of a random small history: players 2..7
    referred in its first two days, by 1 or by an earlier player; deposits (some pending) and
    bets over three weeks, before and after the referrals, some at the same instant; 0-3
    criteria versions from random local dates, thresholds (zero among them), windows."""
    base = rng.choice(_BASES)

    def instant(day_from: int, day_to: int) -> datetime:
        return base + timedelta(days=rng.randint(day_from, day_to), minutes=rng.choice(_MINUTES))

    referrals = [(p, rng.choice([1, *range(2, p)]), instant(0, 1)) for p in range(2, 8)]
    events: list[tuple] = []
    for player in range(2, 8):
        for _ in range(rng.randint(0, 7)):
            at = instant(-1, 20) if not events or rng.random() < 0.8 else events[-1][3]
            if rng.random() < 0.35:
                status = "aprovado" if rng.random() < 0.85 else "pendente"
                events.append(("deposit", player, rng.choice(("10.00", "20.00", "30.00", "50.00")), at, status))
            else:
                events.append(("bet", player, rng.choice(("0.00", "10.00", "30.00", "50.00", "60.00")), at, None))
    first_day = base.astimezone(oracle.ZoneInfo("America/Sao_Paulo")).date()
    days = rng.sample(range(-2, 21), rng.randint(0, 3))
    criteria = [(first_day + timedelta(days=d), rng.choice(("0.00", "10.00", "30.00", "60.00")),
                 rng.choice(("0.00", "50.00", "100.00", "150.00")), rng.choice((0, 1, 2, 3)),
                 rng.choice((None, None, 1, 3, 10))) for d in days]
    return referrals, events, criteria


async def _load(op: Operation, robust_url: str, referrals, events, criteria, cut: datetime | None) -> None:
    """The criteria versions, the referrals, and the events up to ``cut`` (None: all)."""
    for version in criteria:
        await add_criteria(robust_url, version[0].isoformat(), *version[1:])
    for player, referrer, at in referrals:
        await op.track(player, referrer, at.isoformat())
    for kind, player, amount, at, status in events:
        if cut is None or at <= cut:
            await _event(op, kind, player, amount, at, status)


async def _event(op: Operation, kind: str, player: int, amount: str, at: datetime, status: str | None) -> None:
    if kind == "deposit":
        await op.deposit(player, amount, at.isoformat(), status or "aprovado")
    else:
        await op.bet(player, amount, "0.00", at.isoformat())


@pytest.mark.parametrize("seed", range(int(8 * _SCALE)))
async def test_random_histories_and_criteria_match_the_oracle(
    seed, op, settings, robust_url, operation_url, robust_template
):
    """Random histories and criteria versions (tests/etl/oracle.py judges each instant by the
    version of its local date, with windows): one full load writes the oracle's ledger, with the
    judging version in the snapshot; chronological incremental cycles write the same ledger.
    FATURE_PROPERTY_SCALE=10 runs ten times as many histories."""
    rng = random.Random(seed)
    referrals, events, criteria = _history(rng)
    for uid in range(1, 8):
        await op.user(uid, afiliado=uid == 1)
    events.sort(key=lambda e: e[3])
    cut = referrals[-1][2] if not events else max(max(r[2] for r in referrals), events[len(events) // 2][3])
    await _load(op, robust_url, referrals, events, criteria, cut)
    await etl(settings, robust_url, operation_url)  # the first load: everything up to the cut
    later = sorted({e[3] for e in events if e[3] > cut})
    for i in range(0, len(later), 3):  # chronological incremental cycles, three instants each
        for event in events:
            if event[3] in later[i:i + 3]:
                await _event(op, *event)
        await etl(settings, robust_url, operation_url)

    src = await oracle.read_source(operation_url)
    versions = await oracle.read_criteria(robust_url)
    want = oracle.expected(src, None, settings.timezone, versions).validations
    got = (await oracle.read_robust(robust_url))["affiliate_cpa_validations"]
    assert got == want, (criteria, oracle.diff({"v": want}, {"v": got}))
    act, edges, tz = oracle.activity(src), oracle.usable_edges(src), oracle.ZoneInfo(settings.timezone)
    for user, row in (await validated(robust_url)).items():
        q = oracle.qualifying_instant(user, act, tz, versions, edges[user][1])
        assert q is not None and q.criteria is not None
        assert row[4] == (q.criteria.min_deposits, q.criteria.min_stake, q.criteria.min_active_days,
                          q.criteria.window_days), user

    fresh = await new_robust_database(robust_template)
    try:
        for version in criteria:
            await add_criteria(fresh, version[0].isoformat(), *version[1:])
        await etl(settings, fresh, operation_url)
        assert await ledger(fresh) == await ledger(robust_url)
    finally:
        await drop_database(fresh)
