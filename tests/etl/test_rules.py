"""Every rule of METRICS.md on small hand-built histories, one edge case a test."""

from __future__ import annotations

import asyncio
from datetime import date
from decimal import Decimal as D

import asyncpg
import pytest

from etl.sync import STEPS, EtlBusy, InjectedFailure
from tests.support.factories import etl, fetch


async def add_plan_version(
    conn: asyncpg.Connection, plan_id: int, effective_from: str, *, cpa_level_1: str, rev_share_level_1: str
) -> None:
    """A plan version with the default amounts except level 1's CPA and REV share."""
    await conn.execute(
        "INSERT INTO commission_plan_versions (plan_id, effective_from, cpa_level_1, cpa_level_2,"
        " cpa_level_3, cpa_level_4, cpa_level_5, rev_share_level_1, rev_share_level_2,"
        " rev_share_level_3, rev_share_level_4, rev_share_level_5)"
        " VALUES ($1, $2::date, $3, 20, 10, 5, 5, $4, 0.10, 0.05, 0.03, 0.02)",
        plan_id, date.fromisoformat(effective_from), D(cpa_level_1), D(rev_share_level_1),
    )


async def upline(robust_url: str, user_id: int) -> list[tuple[int, int]]:
    rows = await fetch(
        robust_url,
        "SELECT mlm_level, referrer_id FROM affiliate_referrals WHERE referred_id = $1 ORDER BY 1",
        user_id,
    )
    return [(r[0], r[1]) for r in rows]


async def mlm(robust_url: str, affiliate_id: int) -> asyncpg.Record | None:
    rows = await fetch(
        robust_url, "SELECT * FROM affiliate_mlm_structure WHERE affiliate_id = $1", affiliate_id
    )
    return rows[0] if rows else None


async def ledger(robust_url: str) -> list[tuple]:
    rows = await fetch(
        robust_url,
        "SELECT affiliate_id, referred_user_id, cpa_level, cpa_amount, validation_date "
        "FROM affiliate_cpa_validations ORDER BY referred_user_id, cpa_level",
    )
    return [tuple(r) for r in rows]


async def test_five_level_cut_on_a_seven_deep_chain(op, settings, robust_url, operation_url):
    # 1 <- 2 <- 3 <- 4 <- 5 <- 6 <- 7 <- 8: user 8 has seven ancestors, counts for five.
    for uid in range(1, 9):
        await op.user(uid)
    for uid in range(2, 9):
        await op.track(uid, uid - 1, "2025-01-02 12:00Z")
    await etl(settings, robust_url, operation_url)
    assert await upline(robust_url, 8) == [(1, 7), (2, 6), (3, 5), (4, 4), (5, 3)]
    assert (await mlm(robust_url, 1))["total_network_size"] == 5  # users 2..6
    assert (await mlm(robust_url, 1))["level_5_count"] == 1
    assert (await mlm(robust_url, 2))["total_network_size"] == 5  # users 3..7
    affiliates = {r[0] for r in await fetch(robust_url, "SELECT affiliate_id FROM affiliates")}
    assert affiliates == set(range(1, 8))  # 8 referred nobody and is not flagged


async def test_cycle_never_loops_nor_counts_twice(op, settings, robust_url, operation_url):
    # 1 -> 2 -> 3 -> 1 (a cycle in bad data) and 4 referred by 1.
    for uid in range(1, 5):
        await op.user(uid)
    await op.track(1, 3, "2025-01-02 12:00Z")
    await op.track(2, 1, "2025-01-02 12:00Z")
    await op.track(3, 2, "2025-01-02 12:00Z")
    await op.track(4, 1, "2025-01-02 12:00Z")
    await etl(settings, robust_url, operation_url)
    # 4's walk: p1 = 1, p2 = 3, p3 = 2, then 1 again: stops.
    assert await upline(robust_url, 4) == [(1, 1), (2, 3), (3, 2)]
    # 1's walk: p1 = 3, p2 = 2, then 1 itself: stops.
    assert await upline(robust_url, 1) == [(1, 3), (2, 2)]
    m1 = await mlm(robust_url, 1)
    assert (m1["level_1_count"], m1["level_2_count"], m1["level_3_count"]) == (2, 1, 0)


async def test_self_referral_is_skipped_and_recorded(op, settings, robust_url, operation_url):
    await op.user(1)
    tracked_id = await op.track(1, 1, "2025-01-02 12:00Z")
    result = await etl(settings, robust_url, operation_url)
    assert await fetch(robust_url, "SELECT * FROM affiliates") == []
    reasons = await fetch(robust_url, "SELECT source_table, source_id, reason FROM etl.anomalies")
    assert [(r[0], r[1]) for r in reasons] == [("tracked", tracked_id)]
    assert "self-referral" in reasons[0][2]
    assert result.anomalies == 1


async def test_orphan_referrer_arriving_later(op, settings, robust_url, operation_url):
    await op.user(2, at="2025-01-02 12:00Z")
    await op.track(2, 1, "2025-01-02 12:00Z")  # referrer 1 not in cadastro yet
    await op.deposit(2, "40.00", "2025-01-03 12:00Z")
    await etl(settings, robust_url, operation_url)
    assert await fetch(robust_url, "SELECT * FROM affiliates") == []
    held = await fetch(
        robust_url, "SELECT reason FROM etl.anomalies WHERE source_table = 'tracked'"
    )
    assert "held" in held[0][0]

    await op.user(1, afiliado=True, at="2025-01-04 12:00Z")
    await etl(settings, robust_url, operation_url)
    assert await upline(robust_url, 2) == [(1, 1)]
    m = await mlm(robust_url, 1)
    assert (m["level_1_count"], m["level_1_deposits"]) == (1, D("40.00"))


async def test_referred_row_arriving_after_activity(op, settings, robust_url, operation_url):
    await op.user(1, afiliado=True)
    await op.user(2)
    await op.deposit(2, "30.00", "2025-01-05 12:00Z")
    await op.bet(2, "60.00", "0.00", "2025-01-05 13:00Z")
    await op.bet(2, "40.00", "10.00", "2025-01-06 13:00Z")
    await etl(settings, robust_url, operation_url)
    assert await ledger(robust_url) == []  # qualified, but nobody to pay: no upline yet
    await op.track(2, 1, "2025-01-07 12:00Z")
    await etl(settings, robust_url, operation_url)
    rows = await ledger(robust_url)
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [(1, 2, 1, D("50.00"))]
    assert rows[0][4].isoformat() == "2025-01-06T13:00:00+00:00"  # t* is in the past
    m = await mlm(robust_url, 1)
    assert (m["level_1_deposits"], m["level_1_bets"], m["level_1_ggr"]) == (
        D("30.00"),
        D("100.00"),
        D("90.00"),
    )
    assert m["level_1_rev"] == D("15.00") + D("7.50")


async def test_local_midnight_boundaries(op, settings, robust_url, operation_url):
    await op.user(1, afiliado=True)
    await op.user(2)
    await op.track(2, 1, "2024-12-01 12:00Z")
    # 23:59:59 local on Sunday 31 Dec 2023 vs 00:00:00 local on Monday 1 Jan 2024 (UTC-3).
    await op.bet(2, "10.00", "0.00", "2024-01-01 02:59:59Z")
    await op.bet(2, "20.00", "0.00", "2024-01-01 03:00:00Z")
    await etl(settings, robust_url, operation_url)
    rows = await fetch(
        robust_url,
        "SELECT period_type, period_start::text, total_bets FROM affiliate_periodic_summaries "
        "WHERE affiliate_id = 1 AND total_bets > 0 ORDER BY 1, 2",
    )
    got = {(r[0], r[1]): r[2] for r in rows}
    assert got[("daily", "2023-12-31")] == D("10.00")
    assert got[("daily", "2024-01-01")] == D("20.00")
    assert got[("weekly", "2023-12-25")] == D("10.00")  # Sunday belongs to Monday 25 Dec's week
    assert got[("weekly", "2024-01-01")] == D("20.00")
    assert got[("monthly", "2023-12-01")] == D("10.00")
    assert got[("monthly", "2024-01-01")] == D("20.00")
    assert got[("yearly", "2023-01-01")] == D("10.00")
    assert got[("yearly", "2024-01-01")] == D("20.00")


async def test_exact_thresholds_and_same_instant(op, settings, robust_url, operation_url):
    await op.user(1, afiliado=True)
    await op.user(2)
    await op.track(2, 1, "2025-01-01 12:00Z")
    await op.bet(2, "70.00", "0.00", "2025-01-02 12:00Z")
    # Exactly 30.00 deposited and exactly 100.00 staked at the same instant, second day.
    await op.deposit(2, "30.00", "2025-01-03 12:00Z")
    await op.bet(2, "30.00", "0.00", "2025-01-03 12:00Z")
    await etl(settings, robust_url, operation_url)
    rows = await fetch(robust_url, "SELECT * FROM affiliate_cpa_validations")
    assert len(rows) == 1
    row = rows[0]
    assert row["validation_date"].isoformat() == "2025-01-03T12:00:00+00:00"
    assert (row["user_deposits"], row["user_bets"], row["days_active"]) == (
        D("30.00"),
        D("100.00"),
        2,
    )


async def test_just_below_thresholds_does_not_qualify(op, settings, robust_url, operation_url):
    await op.user(1, afiliado=True)
    await op.user(2)
    await op.track(2, 1, "2025-01-01 12:00Z")
    await op.deposit(2, "29.99", "2025-01-02 12:00Z")
    await op.bet(2, "60.00", "0.00", "2025-01-02 12:00Z")
    await op.bet(2, "60.00", "0.00", "2025-01-03 12:00Z")
    await etl(settings, robust_url, operation_url)
    assert await ledger(robust_url) == []


async def test_deposit_approved_later_gives_past_t_star(op, settings, robust_url, operation_url):
    await op.user(1, afiliado=True)
    await op.user(2)
    await op.track(2, 1, "2025-01-01 12:00Z")
    dep = await op.deposit(2, "50.00", "2025-01-02 10:00Z", "pendente")
    await op.bet(2, "60.00", "0.00", "2025-01-02 12:00Z")
    await op.bet(2, "60.00", "0.00", "2025-01-03 12:00Z")
    await etl(settings, robust_url, operation_url)
    assert await ledger(robust_url) == []
    await op.set_status("depositos", dep, "aprovado", "2025-01-10 12:00Z")
    await etl(settings, robust_url, operation_url)
    rows = await ledger(robust_url)
    assert rows[0][4].isoformat() == "2025-01-03T12:00:00+00:00"
    daily = await fetch(
        robust_url,
        "SELECT period_start::text, cpa_earned, validated_referrals, total_deposits "
        "FROM affiliate_periodic_summaries WHERE affiliate_id = 1 AND period_type = 'daily' "
        "ORDER BY 1",
    )
    assert [tuple(r) for r in daily] == [
        ("2025-01-01", D("0.00"), 0, D("0.00")),
        ("2025-01-02", D("0.00"), 0, D("50.00")),
        ("2025-01-03", D("50.00"), 1, D("0.00")),
    ]


async def test_cancelled_deposit_leaves_the_ledger(op, settings, robust_url, operation_url):
    await op.user(1, afiliado=True)
    await op.user(2)
    await op.track(2, 1, "2025-01-01 12:00Z")
    dep = await op.deposit(2, "50.00", "2025-01-02 10:00Z")
    await op.bet(2, "60.00", "0.00", "2025-01-02 12:00Z")
    await op.bet(2, "60.00", "0.00", "2025-01-03 12:00Z")
    await etl(settings, robust_url, operation_url)
    before = await ledger(robust_url)
    assert len(before) == 1
    await op.set_status("depositos", dep, "cancelado", "2025-01-10 12:00Z")
    await etl(settings, robust_url, operation_url)
    assert await ledger(robust_url) == before  # the CPA stays where it was paid
    m = await mlm(robust_url, 1)
    assert (m["level_1_deposits"], m["level_1_cpa"]) == (D("0.00"), D("50.00"))
    await etl(settings, robust_url, operation_url, full=True)
    assert await ledger(robust_url) == before
    assert (await mlm(robust_url, 1))["level_1_cpa"] == D("50.00")


async def test_moved_referral_moves_its_whole_history(op, settings, robust_url, operation_url):
    await op.user(1, afiliado=True)
    await op.user(9, afiliado=True)
    await op.user(2)
    await op.user(3)
    await op.track(2, 1, "2025-01-01 12:00Z")
    await op.track(3, 2, "2025-01-01 13:00Z")
    await op.bet(3, "100.00", "20.00", "2025-01-05 12:00Z")
    await etl(settings, robust_url, operation_url)
    assert (await mlm(robust_url, 1))["level_2_ggr"] == D("80.00")
    await op.move(2, 9, "2025-02-01 12:00Z")
    await etl(settings, robust_url, operation_url)
    m1, m9 = await mlm(robust_url, 1), await mlm(robust_url, 9)
    assert m1["total_network_size"] == 0 and m1["level_2_ggr"] == D("0.00")
    assert (m9["level_1_count"], m9["level_2_count"], m9["level_2_ggr"], m9["level_2_rev"]) == (
        1,
        1,
        D("80.00"),
        D("8.00"),
    )
    past = await fetch(
        robust_url,
        "SELECT affiliate_id, rev_earned FROM affiliate_periodic_summaries "
        "WHERE period_type = 'daily' AND period_start = '2025-01-05' ORDER BY 1",
    )
    assert [tuple(r) for r in past] == [(2, D("20.00")), (9, D("8.00"))]


async def test_late_row_inside_overlap_window(op, settings, robust_url, operation_url):
    await op.user(1, afiliado=True)
    await op.user(2)
    await op.track(2, 1, "2025-01-01 12:00Z")
    await op.bet(2, "10.00", "0.00", "2025-01-01 12:10Z")
    await etl(settings, robust_url, operation_url)
    # Committed late: its criado_em is 5 minutes behind what the last run already saw.
    await op.bet(2, "5.00", "0.00", "2025-01-01 12:05Z")
    await etl(settings, robust_url, operation_url)
    await etl(settings, robust_url, operation_url)  # re-reading the overlap counts nothing twice
    assert (await mlm(robust_url, 1))["level_1_bets"] == D("15.00")


async def test_second_run_changes_nothing(op, settings, robust_url, operation_url):
    await op.user(1, afiliado=True)
    await op.user(2)
    await op.track(2, 1, "2025-01-01 12:00Z")
    await op.deposit(2, "50.00", "2025-01-02 10:00Z")
    await op.bet(2, "60.00", "10.00", "2025-01-02 12:00Z")
    await etl(settings, robust_url, operation_url)
    snapshot = await fetch(
        robust_url, "SELECT * FROM affiliate_periodic_summaries ORDER BY 1, 2, 3"
    )
    second = await etl(settings, robust_url, operation_url)
    assert second.rows_written.get("affiliates", 0) == 0
    assert second.affiliates_touched == 0
    # The overlap re-read only rows already mirrored: nothing was derived at all.
    assert second.rows_written == {} and set(second.step_seconds) == set(STEPS)
    assert (
        await fetch(robust_url, "SELECT * FROM affiliate_periodic_summaries ORDER BY 1, 2, 3")
        == snapshot
    )


@pytest.mark.parametrize("step", STEPS)
async def test_failure_between_steps_leaves_nothing(op, settings, robust_url, operation_url, step):
    await op.user(1, afiliado=True)
    await op.user(2)
    await op.track(2, 1, "2025-01-01 12:00Z")
    await op.bet(2, "60.00", "10.00", "2025-01-02 12:00Z")
    with pytest.raises(InjectedFailure):
        await etl(settings, robust_url, operation_url, fail_after=step)
    for table in ("affiliates", "affiliate_periodic_summaries", "etl.src_bets", "etl.user_upline"):
        assert await fetch(robust_url, f"SELECT 1 FROM {table}") == []
    cursors = await fetch(
        robust_url, "SELECT cursor_ts FROM etl.sync_cursors WHERE cursor_ts IS NOT NULL"
    )
    assert cursors == []
    runs = await fetch(robust_url, "SELECT status FROM etl.runs")
    assert [r[0] for r in runs] == ["failed"]
    await etl(settings, robust_url, operation_url)
    assert (await mlm(robust_url, 1))["level_1_ggr"] == D("50.00")


async def test_two_concurrent_runs_one_skips(op, settings, robust_url, operation_url):
    await op.user(1, afiliado=True)
    await op.user(2)
    await op.track(2, 1, "2025-01-01 12:00Z")
    outcomes = await asyncio.gather(
        *(etl(settings, robust_url, operation_url) for _ in range(2)), return_exceptions=True
    )
    # Either one skipped while the other ran, or they ran one after the other: never both at once.
    busy = [o for o in outcomes if isinstance(o, EtlBusy)]
    done = [o for o in outcomes if not isinstance(o, BaseException)]
    assert len(done) >= 1 and len(busy) + len(done) == 2
    statuses = sorted(r[0] for r in await fetch(robust_url, "SELECT status FROM etl.runs"))
    assert statuses in (["skipped", "success"], ["success", "success"])


async def test_lock_held_elsewhere_skips(op, settings, robust_url, operation_url):
    from etl.sync import ETL_LOCK_KEY

    holder = await asyncpg.connect(robust_url)
    try:
        await holder.execute("SELECT pg_advisory_lock($1)", ETL_LOCK_KEY)
        with pytest.raises(EtlBusy):
            await etl(settings, robust_url, operation_url)
    finally:
        await holder.close()
    assert (await etl(settings, robust_url, operation_url)).status == "success"


async def test_source_dropping_mid_run_leaves_nothing(op, settings, robust_url, operation_url):
    await op.user(1, afiliado=True)
    await op.user(2)
    await op.track(2, 1, "2025-01-01 12:00Z")
    await op.conn.execute("ALTER TABLE casino_bets_v RENAME TO casino_bets_gone")
    from etl.sync import EtlError

    with pytest.raises(EtlError, match="casino_bets_v"):
        await etl(settings, robust_url, operation_url)
    assert await fetch(robust_url, "SELECT 1 FROM etl.src_cadastro") == []
    await op.conn.execute("ALTER TABLE casino_bets_gone RENAME TO casino_bets_v")
    assert (await etl(settings, robust_url, operation_url)).status == "success"
    assert await upline(robust_url, 2) == [(1, 1)]


async def test_rev_rounds_half_away_from_zero_per_day(op, settings, robust_url, operation_url):
    await op.user(1, afiliado=True)
    await op.user(2)
    await op.track(2, 1, "2025-01-01 12:00Z")
    await op.bet(2, "0.10", "0.00", "2025-01-02 12:00Z")  # 25% of 0.10 = 0.025 -> 0.03
    await op.bet(2, "0.00", "0.10", "2025-01-03 12:00Z")  # 25% of -0.10 = -0.025 -> -0.03
    await op.bet(2, "0.10", "0.00", "2025-01-04 12:00Z")
    await etl(settings, robust_url, operation_url)
    daily = await fetch(
        robust_url,
        "SELECT period_start::text, rev_earned FROM affiliate_periodic_summaries "
        "WHERE affiliate_id = 1 AND period_type = 'daily' AND period_start > '2025-01-01' ORDER BY 1",
    )
    assert [r[1] for r in daily] == [D("0.03"), D("-0.03"), D("0.03")]
    # Larger figures are sums of the rounded daily accruals, not a rounding of the total.
    assert (await mlm(robust_url, 1))["level_1_rev"] == D("0.03")
    monthly = await fetch(
        robust_url,
        "SELECT rev_earned FROM affiliate_periodic_summaries "
        "WHERE affiliate_id = 1 AND period_type = 'monthly'",
    )
    assert monthly[0][0] == D("0.03")


async def test_broken_source_rows_are_skipped_and_recorded(op, settings, robust_url, operation_url):
    # The real source has no constraints to speak of: drop ours to let bad rows in.
    for table, columns in {
        "depositos": ("user_id", "valor", "status", "criado_em"),
        "casino_bets_v": ("valor_aposta",),
        "cadastro": ("status",),
    }.items():
        for column in columns:
            await op.conn.execute(f"ALTER TABLE {table} ALTER COLUMN {column} DROP NOT NULL")
    for table in ("depositos", "casino_bets_v", "cadastro"):
        for (name,) in await op.conn.fetch(
            "SELECT conname FROM pg_constraint WHERE conrelid = $1::regclass AND contype = 'c'",
            table,
        ):
            await op.conn.execute(f"ALTER TABLE {table} DROP CONSTRAINT {name}")
    await op.user(1, afiliado=True, status="banido")  # unknown status: kept, shown inactive
    await op.user(2)
    await op.track(2, 1, "2025-01-01 12:00Z")
    good = await op.deposit(2, "40.00", "2025-01-02 12:00Z")
    await op.conn.execute(
        "INSERT INTO depositos VALUES (900, 2, -5.00, 'aprovado', '2025-01-02 12:00Z', '2025-01-02 12:00Z'),"
        " (901, 2, 10.00, 'estornado', '2025-01-02 12:00Z', '2025-01-02 12:00Z'),"
        " (902, 2, 99999999999.00, 'aprovado', '2025-01-02 12:00Z', '2025-01-02 12:00Z'),"
        " (903, NULL, 10.00, 'aprovado', '2025-01-02 12:00Z', '2025-01-02 12:00Z')"
    )
    await op.conn.execute(
        "INSERT INTO casino_bets_v VALUES (904, 2, 'x', -1.00, 0, '2025-01-02 12:00Z'),"
        " (905, 2, 'x', NULL, 0, '2025-01-02 12:00Z'), (906, 2, 'x', 5.00, 1.00, '2025-01-02 12:00Z')"
    )
    result = await etl(settings, robust_url, operation_url)
    assert result.status == "success"
    m = await mlm(robust_url, 1)
    assert (m["level_1_deposits"], m["level_1_bets"], m["level_1_ggr"]) == (
        D("40.00"),
        D("5.00"),
        D("4.00"),
    )
    status = await fetch(robust_url, "SELECT status FROM affiliates WHERE affiliate_id = 1")
    assert status[0][0] == "inactive"
    recorded = {
        (r[0], r[1])
        for r in await fetch(robust_url, "SELECT source_table, source_id FROM etl.anomalies")
    }
    assert {
        ("depositos", 900),
        ("depositos", 901),
        ("depositos", 902),
        ("depositos", 903),
        ("casino_bets_v", 904),
        ("casino_bets_v", 905),
        ("cadastro", 1),
    } <= recorded
    assert ("depositos", good) not in recorded
    assert result.anomalies == len(recorded)


async def test_plan_versions_and_assignments_by_day_and_by_t_star(op, settings, robust_url, operation_url):
    """REV takes the rate in force each local day, CPA the amount in force at t*."""
    conn = await asyncpg.connect(robust_url)
    try:
        # The default plan pays 30% at level 1 from 2 January; affiliate 1 moves to its own
        # plan (40%, CPA 80.00) from 3 January.
        await add_plan_version(conn, 1, "2025-01-02", cpa_level_1="50", rev_share_level_1="0.30")
        vip = await conn.fetchval("INSERT INTO commission_plans (name) VALUES ('vip') RETURNING id")
        await add_plan_version(conn, vip, "1900-01-01", cpa_level_1="80", rev_share_level_1="0.40")
        await conn.execute(
            "INSERT INTO affiliate_plan_history (affiliate_id, effective_from, plan_id) "
            "VALUES (1, '2025-01-03', $1)", vip)
    finally:
        await conn.close()
    await op.user(1, afiliado=True)
    await op.user(2)
    await op.track(2, 1, "2025-01-01 12:00Z")
    await op.bet(2, "10.00", "0.00", "2025-01-01 15:00Z")   # 25%: 2.50
    await op.bet(2, "10.00", "0.00", "2025-01-02 15:00Z")   # 30%: 3.00
    await op.deposit(2, "30.00", "2025-01-03 14:00Z")
    await op.bet(2, "100.00", "0.00", "2025-01-03 15:00Z")  # vip 40%: 40.00; t* here
    await etl(settings, robust_url, operation_url)
    daily = await fetch(robust_url, "SELECT period_start::text, rev_earned, cpa_earned FROM "
                        "affiliate_periodic_summaries WHERE affiliate_id = 1 AND period_type = 'daily' "
                        "ORDER BY 1")
    assert [tuple(r) for r in daily] == [
        ("2025-01-01", D("2.50"), D("0.00")),
        ("2025-01-02", D("3.00"), D("0.00")),
        ("2025-01-03", D("40.00"), D("80.00")),
    ]
    before = await fetch(robust_url, "SELECT * FROM affiliate_mlm_structure")
    await etl(settings, robust_url, operation_url, full=True)
    after = await fetch(robust_url, "SELECT * FROM affiliate_mlm_structure")
    strip = lambda rows: [{k: v for k, v in dict(r).items() if k != "updated_at"} for r in rows]  # noqa: E731
    assert strip(after) == strip(before)
    assert after[0]["level_1_rev"] == D("45.50") and after[0]["level_1_cpa"] == D("80.00")


async def test_a_version_in_force_today_re_rates_what_was_already_accrued(
    op, settings, robust_url, operation_url
):
    """A plan version effective today, scheduled after today's activity was loaded, re-rates
    today's REV on the next cycle: incremental ends where a full recompute does."""
    await op.user(1, afiliado=True)
    await op.user(2)
    await op.track(2, 1, "2025-01-01 12:00Z")
    await op.bet(2, "100.00", "0.00", "2025-01-05 15:00Z")
    await etl(settings, robust_url, operation_url)
    assert (await mlm(robust_url, 1))["level_1_rev"] == D("25.00")
    conn = await asyncpg.connect(robust_url)
    try:
        await add_plan_version(conn, 1, "2025-01-05", cpa_level_1="50", rev_share_level_1="0.35")
    finally:
        await conn.close()
    await etl(settings, robust_url, operation_url)
    incremental = await mlm(robust_url, 1)
    assert incremental["level_1_rev"] == D("35.00")
    await etl(settings, robust_url, operation_url, full=True)
    assert (await mlm(robust_url, 1))["level_1_rev"] == D("35.00")


async def test_money_and_bets_of_unknown_users_are_recorded_as_held(op, settings, robust_url, operation_url):
    await op.user(1, afiliado=True)
    first_bet = await op.bet(99, "5.00", "0.00", "2025-01-02 12:00Z")  # user 99 is not in cadastro
    first_deposit = await op.deposit(99, "10.00", "2025-01-02 12:00Z")
    await etl(settings, robust_url, operation_url)  # the first load takes the bulk path
    later_bet = await op.bet(98, "5.00", "0.00", "2025-01-02 12:05Z")
    later_deposit = await op.deposit(97, "10.00", "2025-01-02 12:05Z", "pendente")
    later_withdrawal = await op.withdrawal(97, "4.00", "2025-01-02 12:05Z")
    await op.user(2)  # a known user's deposit in the same cycle is not held
    await op.deposit(2, "10.00", "2025-01-02 12:05Z")
    await etl(settings, robust_url, operation_url)  # an incremental cycle
    # The held deposit is approved later; the re-read overlap rows are checked again: nothing new.
    await op.set_status("depositos", later_deposit, "aprovado", "2025-01-02 12:06Z")
    await etl(settings, robust_url, operation_url)
    rows = await fetch(
        robust_url, "SELECT source_table, source_id FROM etl.anomalies WHERE reason LIKE 'user not in cadastro%'")
    held = [(r[0], r[1]) for r in rows]
    assert sorted(held) == sorted([
        ("casino_bets_v", first_bet), ("depositos", first_deposit), ("casino_bets_v", later_bet),
        ("depositos", later_deposit), ("saque", later_withdrawal),
    ])


async def ranks(robust_url: str) -> tuple[list[tuple], list[tuple]]:
    """(what affiliates_ranked says, what rank() among the active affiliates says)."""
    stored = await fetch(
        robust_url, "SELECT affiliate_id, rank_cpa, rank_referrals FROM affiliates_ranked ORDER BY 1"
    )
    oracle = await fetch(
        robust_url,
        "SELECT a.affiliate_id, r.rank_cpa, r.rank_referrals FROM affiliates a LEFT JOIN ("
        "  SELECT affiliate_id,"
        "         rank() OVER (ORDER BY total_cpa_earned DESC) AS rank_cpa,"
        "         rank() OVER (ORDER BY total_validated_referrals DESC) AS rank_referrals"
        "  FROM affiliates WHERE status = 'active') r USING (affiliate_id) ORDER BY 1",
    )
    return [tuple(r) for r in stored], [tuple(r) for r in oracle]


async def test_ranks_follow_rank_among_active_affiliates_through_changes(
    op, settings, robust_url, operation_url
):
    # Affiliates 1-4; 1 and 2 tie on CPA, 3 has none, 4 will turn inactive.
    for aff in range(1, 5):
        await op.user(aff, afiliado=True)
    player = 100
    for aff, players in ((1, 2), (2, 2), (4, 3)):
        for _ in range(players):
            player += 1
            await op.user(player)
            await op.track(player, aff, "2025-01-01 12:00Z")
            await op.deposit(player, "30.00", "2025-01-02 12:00Z")
            await op.bet(player, "60.00", "0.00", "2025-01-02 12:00Z")
            await op.bet(player, "60.00", "0.00", "2025-01-03 12:00Z")
    await etl(settings, robust_url, operation_url)
    stored, oracle = await ranks(robust_url)
    assert stored == oracle
    assert stored == [(1, 2, 2), (2, 2, 2), (3, 4, 4), (4, 1, 1)]

    # 4 leaves the active set, 3 gains one validated player: every rank below moves.
    await op.conn.execute(
        "UPDATE cadastro SET status = 'suspenso', atualizado_em = '2025-01-05 12:00Z' WHERE id = 4"
    )
    await op.user(200)
    await op.track(200, 3, "2025-01-04 12:00Z")
    await op.deposit(200, "30.00", "2025-01-04 12:00Z")
    await op.bet(200, "60.00", "0.00", "2025-01-04 12:00Z")
    await op.bet(200, "60.00", "0.00", "2025-01-05 12:00Z")
    await etl(settings, robust_url, operation_url)
    stored, oracle = await ranks(robust_url)
    assert stored == oracle
    assert stored == [(1, 1, 1), (2, 1, 1), (3, 3, 3), (4, None, None)]
    # Only totals some active affiliate holds have a rank row, with how many hold it.
    values = await fetch(
        robust_url, "SELECT metric, value, rank, holders FROM affiliate_rank_values ORDER BY 1, 2 DESC"
    )
    assert [tuple(r) for r in values] == [
        ("cpa", D("100.00"), 1, 2), ("cpa", D("50.00"), 3, 1),
        ("referrals", D("2.00"), 1, 2), ("referrals", D("1.00"), 3, 1),
    ]
    assert await rank_holders_miscounted(robust_url) == []


async def rank_holders_miscounted(robust_url: str) -> list[tuple]:
    """The (metric, value, stored holders, active affiliates holding it) that disagree."""
    rows = await fetch(
        robust_url,
        "SELECT coalesce(r.metric, n.metric), coalesce(r.value, n.value), r.holders, n.holders"
        " FROM affiliate_rank_values r FULL JOIN ("
        "   SELECT 'cpa' AS metric, total_cpa_earned AS value, count(*)::int AS holders"
        "   FROM affiliates WHERE status = 'active' GROUP BY 2"
        "   UNION ALL SELECT 'referrals', total_validated_referrals, count(*)::int"
        "   FROM affiliates WHERE status = 'active' GROUP BY 2) n"
        "   ON n.metric = r.metric AND n.value = r.value"
        " WHERE r.holders IS DISTINCT FROM n.holders",
    )
    return [tuple(r) for r in rows]


async def test_an_incremental_cycle_reranks_from_its_touched_affiliates_alone(
    op, settings, robust_url, operation_url, monkeypatch
):
    # Issue 17: the ranks of an incremental cycle follow the affiliates it touched, not every
    # affiliate (the holders of each total move by their change; no count over `affiliates`).
    from etl import publish, sync

    statements: list[str] = []
    real_connect = sync.connect

    async def logged_connect(url: str, **kw: object) -> asyncpg.Connection:
        conn = await real_connect(url, **kw)  # type: ignore[arg-type]
        if url == robust_url:
            conn.add_query_logger(lambda q: statements.append(q.query))
        return conn

    monkeypatch.setattr(sync, "connect", logged_connect)
    for aff in range(1, 8):
        await op.user(aff, afiliado=True)
    player = 100
    for aff, players in ((1, 3), (2, 1), (3, 1), (4, 2), (5, 1)):
        for _ in range(players):
            player += 1
            await op.user(player)
            await op.track(player, aff, "2025-01-01 12:00Z")
            await op.deposit(player, "30.00", "2025-01-02 12:00Z")
            await op.bet(player, "60.00", "0.00", "2025-01-02 12:00Z")
            await op.bet(player, "60.00", "0.00", "2025-01-03 12:00Z")
    assert (await etl(settings, robust_url, operation_url)).mode == "full"
    assert any(publish._RANKS in q for q in statements)

    # 2 ties 4 on CPA, 5 turns inactive, 6 gets its first validated player, 1 a player that
    # never qualifies (its row changes, its ranked totals do not).
    history = [
        (201, 2, "30.00"), (202, 6, "30.00"), (203, 1, "1.00"),
    ]
    for user, aff, deposit in history:
        await op.user(user)
        await op.track(user, aff, "2025-01-04 12:00Z")
        await op.deposit(user, deposit, "2025-01-04 12:00Z")
        if deposit != "1.00":
            await op.bet(user, "60.00", "0.00", "2025-01-04 12:00Z")
            await op.bet(user, "60.00", "0.00", "2025-01-05 12:00Z")
    await op.conn.execute(
        "UPDATE cadastro SET status = 'inativo', atualizado_em = '2025-01-05 12:00Z' WHERE id = 5"
    )
    statements.clear()
    assert (await etl(settings, robust_url, operation_url)).mode == "incremental"
    assert not any(publish._RANKS in q for q in statements)
    assert any(publish._APPLY_RANK_CHANGES in q for q in statements)
    stored, oracle = await ranks(robust_url)
    assert stored == oracle
    assert await rank_holders_miscounted(robust_url) == []

    # A cycle whose touched affiliates keep their ranked totals writes no rank.
    await op.deposit(203, "2.00", "2025-01-06 12:00Z")
    statements.clear()
    assert (await etl(settings, robust_url, operation_url)).mode == "incremental"
    assert not any(publish._APPLY_RANK_CHANGES in q or publish._RANKS in q for q in statements)
    assert await rank_holders_miscounted(robust_url) == []


async def test_mirrors_emptied_by_crash_recovery_make_the_next_cycle_a_full_load(
    op, settings, robust_url, operation_url
):
    from tests.etl.test_properties import snapshot, snapshot_diff
    from tests.support.factories import write_worked_example

    await write_worked_example(op)
    assert (await etl(settings, robust_url, operation_url)).mode == "full"
    await op.deposit(103, "40.00", "2025-01-20 12:00Z")
    assert (await etl(settings, robust_url, operation_url)).mode == "incremental"

    # What PostgreSQL's crash recovery does to unlogged tables: empties them.
    conn = await asyncpg.connect(robust_url)
    try:
        unlogged = [r[0] for r in await conn.fetch(
            "SELECT c.oid::regclass::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relpersistence = 'u' AND c.relkind = 'r' ORDER BY 1")]
        assert {"etl.src_bets", "etl.src_depositos", "etl.user_daily", "etl.mirror_loaded"} <= set(unlogged)
        assert "etl.affiliate_level_periods" not in unlogged  # payout statements read it: logged
        await conn.execute(f"TRUNCATE {', '.join(unlogged)}")
    finally:
        await conn.close()

    await op.deposit(103, "25.00", "2025-01-21 12:00Z")
    result = await etl(settings, robust_url, operation_url)
    assert result.mode == "full"
    after_recovery = await snapshot(robust_url)
    assert (await etl(settings, robust_url, operation_url)).mode == "incremental"
    await etl(settings, robust_url, operation_url, full=True)
    assert snapshot_diff(after_recovery, await snapshot(robust_url)) == ""
