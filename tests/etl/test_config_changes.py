"""Changes of terms reach the ETL exactly once and from the start of a local day (issue 14):
the queue of migration 0008, a change committed while a cycle runs, and a plan assigned today
that prices nothing of today (REV and CPA alike), whatever the ETL's timing."""

from __future__ import annotations

from decimal import Decimal as D

import asyncpg
import pytest

from commissions import service
from commissions.inputs import PlanTerms
from etl.sync import InjectedFailure, run_cycle
from tests.support.databases import drop_database
from tests.support.factories import etl, fetch
from tests.support.recompute import fresh_recompute, ledger

VIP = PlanTerms(cpa_by_level=[D("70.00"), D("20.00"), D("10.00"), D("5.00"), D("5.00")],
                rev_share_by_level=[D("0.30"), D("0.10"), D("0.05"), D("0.03"), D("0.02")],
                negative_carryover=True, min_payout=D("300.00"))


async def daily(robust_url: str, affiliate_id: int) -> list[tuple]:
    rows = await fetch(robust_url, "SELECT period_start::text, rev_earned, cpa_earned FROM affiliate_periodic_summaries "
                       "WHERE affiliate_id = $1 AND period_type = 'daily' ORDER BY 1", affiliate_id)
    return [tuple(r) for r in rows]


async def test_a_plan_assigned_today_prices_from_tomorrow_whatever_the_timing(
    op, settings, robust_url, operation_url, robust_template, clock
):
    """Issue 14 item 4: affiliate 1 is put on a plan (CPA 70, REV 30%) during the day, after one
    of its players qualified that morning. Today stays on the old terms, REV and CPA alike;
    tomorrow's player gets 70; incremental runs, --full and a fresh recompute agree."""
    await op.user(1, afiliado=True)
    for player in (2, 3):
        await op.user(player)
        await op.track(player, 1, "2025-11-01 12:00Z")
        await op.deposit(player, "30.00", "2025-11-10 12:00Z")
        await op.bet(player, "50.00", "0.00", "2025-11-10 13:00Z")
    await op.bet(2, "50.00", "0.00", "2025-11-20 11:00Z")  # 08:00 local: player 2 qualifies today
    clock("2025-11-20T09:00:00-03:00")
    await etl(settings, robust_url, operation_url)

    clock("2025-11-20T10:00:00-03:00")
    conn = await asyncpg.connect(robust_url)
    try:
        plan = await service.create_plan(conn, settings.timezone, "VIP", VIP, "admin")
        assignment = await service.assign_plan(conn, settings.timezone, 1, plan.id, "admin")
    finally:
        await conn.close()
    assert str(assignment.effective_from) == "2025-11-21"
    await op.bet(2, "100.00", "0.00", "2025-11-20 15:00Z")  # later today: still 25%
    await etl(settings, robust_url, operation_url)

    clock("2025-11-21T09:00:00-03:00")
    await op.bet(3, "100.00", "0.00", "2025-11-21 11:00Z")  # player 3 qualifies tomorrow: 70, 30%
    await etl(settings, robust_url, operation_url)

    assert await daily(robust_url, 1) == [
        ("2025-11-01", D("0.00"), D("0.00")),  # the referrals
        ("2025-11-10", D("25.00"), D("0.00")),
        ("2025-11-20", D("37.50"), D("50.00")),  # 25% of 150, CPA 50: the terms today began with
        ("2025-11-21", D("30.00"), D("70.00")),
    ]
    incremental = await ledger(robust_url)
    await etl(settings, robust_url, operation_url, full=True)
    assert await ledger(robust_url) == incremental
    fresh = await fresh_recompute(settings, robust_template, robust_url, operation_url)
    try:
        assert await ledger(fresh) == incremental
        assert await daily(fresh, 1) == await daily(robust_url, 1)
    finally:
        await drop_database(fresh)


async def test_a_change_committed_while_a_cycle_runs_is_applied_by_the_next(
    op, settings, robust_url, operation_url, robust_template
):
    """A change whose transaction began before a cycle's snapshot and committed after the cycle
    took the queue is neither lost nor applied twice: the next cycle applies it. (The version is
    dated on a day the ETL already derived, which the API never allows: the path a late row or a
    clock ahead of the source takes.)"""
    await op.user(1, afiliado=True)
    await op.user(2)
    await op.track(2, 1, "2025-01-01 12:00Z")
    await op.bet(2, "100.00", "0.00", "2025-01-05 15:00Z")
    await etl(settings, robust_url, operation_url)

    change = await asyncpg.connect(robust_url)
    try:
        tx = change.transaction()
        await tx.start()
        await change.execute(
            "INSERT INTO commission_plan_versions (plan_id, effective_from, cpa_level_1, cpa_level_2,"
            " cpa_level_3, cpa_level_4, cpa_level_5, rev_share_level_1, rev_share_level_2,"
            " rev_share_level_3, rev_share_level_4, rev_share_level_5)"
            " VALUES (1, '2025-01-05', 50, 20, 10, 5, 5, 0.35, 0.10, 0.05, 0.03, 0.02)")

        async def commit_after_the_queue_was_taken(step, cycle, mode) -> None:
            if step.name == "config":
                assert await cycle.conn.fetchval("SELECT count(*) FROM config_changes") == 0
                await tx.commit()

        await op.bet(2, "1.00", "0.00", "2025-01-06 15:00Z")  # something to derive
        await etl(settings, robust_url, operation_url, after_step=commit_after_the_queue_was_taken)
    finally:
        await change.close()
    assert [tuple(r) for r in await fetch(robust_url, "SELECT kind, effective_from::text FROM etl.config_changes")] == [
        ("plan_version", "2025-01-05")]

    second = await etl(settings, robust_url, operation_url)  # nothing new in the source: not idle
    assert second.mode == "incremental" and second.config_changes == 1
    assert await fetch(robust_url, "SELECT * FROM etl.config_changes") == []
    assert (await daily(robust_url, 1))[1] == ("2025-01-05", D("35.00"), D("0.00"))
    third = await etl(settings, robust_url, operation_url)
    assert third.config_changes == 0
    fresh = await fresh_recompute(settings, robust_template, robust_url, operation_url)
    try:
        assert await daily(fresh, 1) == await daily(robust_url, 1)
    finally:
        await drop_database(fresh)


async def test_a_failed_cycle_leaves_the_queue_as_it_was(op, settings, robust_url, operation_url):
    await op.user(1, afiliado=True)
    await op.user(2)
    await op.track(2, 1, "2025-01-01 12:00Z")
    await etl(settings, robust_url, operation_url)
    conn = await asyncpg.connect(robust_url)
    try:
        await conn.execute("INSERT INTO affiliate_plan_history (affiliate_id, effective_from, plan_id) "
                           "VALUES (1, '2025-01-01', 1), (1, '2025-02-01', 1)")
        # the first row is the plan the affiliate had anyway: not queued; the second neither
        assert await conn.fetchval("SELECT count(*) FROM etl.config_changes") == 0
        vip = await conn.fetchval("INSERT INTO commission_plans (name) VALUES ('vip') RETURNING id")
        await conn.execute("INSERT INTO affiliate_plan_history (affiliate_id, effective_from, plan_id) "
                           "VALUES (1, '2025-03-01', $1)", vip)
        assert await conn.fetchval("SELECT count(*) FROM etl.config_changes") == 1
    finally:
        await conn.close()
    with pytest.raises(InjectedFailure):
        await run_cycle(settings, robust_url, operation_url, fail_after="accrual")
    queued = await fetch(robust_url, "SELECT kind, effective_from::text, affiliate_id FROM etl.config_changes")
    assert [tuple(r) for r in queued] == [("plan_assignment", "2025-03-01", 1)]
