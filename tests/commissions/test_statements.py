"""Statements end to end: open = robust tables, close freezes, late data and rejections
become adjustments in the next open month, minimum payout hold, the workflow, scoping."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from tests.commissions.conftest import Program
from tests.factories import Operation
from tests.resolvers.world import rows

STATEMENT = """
query S($id: ID!) { statement(id: $id) {
  id status month cpaValidated cpaRejected cpa rev cpaAdjustments revAdjustments carryoverIn
  revPayable carryoverOut heldIn payable heldOut belowMinPayout minPayout paymentReference
  lines { kind amount level day validationId referredUserId correctsMonth description }
} }"""
CLOSE = "mutation C($m: Date!) { closeMonth(month: $m) { months statements lines } }"


async def statement(program: Program, id: str, **kw: object) -> dict:
    return (await program.data(STATEMENT, {"id": id}, **kw))["statement"]


async def monthly_summary(program: Program, affiliate_id: int, month: str) -> tuple[D, D]:
    found = await rows(program.world.robust_url,
                       "SELECT cpa_earned, rev_earned FROM affiliate_periodic_summaries "
                       "WHERE affiliate_id = $1 AND period_type = 'monthly' AND period_start = $2::text::date",
                       affiliate_id, month)
    return (found[0]["cpa_earned"], found[0]["rev_earned"]) if found else (D("0.00"), D("0.00"))


async def test_open_statements_equal_the_robust_tables(program: Program) -> None:
    for affiliate_id, month in [(1, "2025-03-01"), (1, "2025-04-01"), (2, "2025-03-01")]:
        s = await statement(program, f"{affiliate_id}:{month[:7]}")
        cpa, rev = await monthly_summary(program, affiliate_id, month)
        assert s["status"] == "OPEN"
        assert (D(s["cpaValidated"]), D(s["rev"])) == (cpa, rev)
        assert sum(D(line["amount"]) for line in s["lines"]) == cpa + rev
    march = await statement(program, "1:2025-03")
    assert D(march["cpa"]) == D("350.00") and D(march["rev"]) == D("105.00")  # 25% of 420 GGR
    assert {line["kind"] for line in march["lines"]} == {"CPA", "REV"}
    assert len([line for line in march["lines"] if line["kind"] == "CPA"]) == 7
    april = await statement(program, "1:2025-04")
    # April chains on the open March: nothing held (455 >= 300), REV -200 carried
    assert D(april["rev"]) == D("-200.00") and D(april["carryoverOut"]) == D("-200.00")
    assert D(april["payable"]) == D("0.00") and april["belowMinPayout"]


async def test_close_freezes_and_late_data_becomes_an_adjustment(program: Program) -> None:
    result = (await program.data(CLOSE, {"m": "2025-03-01"}))["closeMonth"]
    assert result["months"] == ["2025-03-01"] and result["statements"] == 2
    march = await statement(program, "1:2025-03")
    assert march["status"] == "CLOSED" and D(march["payable"]) == D("455.00")
    held = await statement(program, "2:2025-03")
    assert held["status"] == "ON_HOLD" and D(held["heldOut"]) == D("65.00")  # 50 CPA + 15.00 REV

    # late data dated in March: a bet of user 11 on March 10th (behind the bets' cursor, so the
    # full recompute picks it up)
    op = await Operation.open(program.world.operation_url)
    try:
        await op.bet(11, "40.00", "0.00", "2025-03-10 13:00Z")
    finally:
        await op.close()
    await program.etl(full=True)

    assert await statement(program, "1:2025-03") == march  # frozen
    april = await statement(program, "1:2025-04")
    adjustments = [line for line in april["lines"] if line["kind"] == "REV_ADJUSTMENT"]
    assert len(adjustments) == 1
    assert adjustments[0]["correctsMonth"] == "2025-03-01" and adjustments[0]["day"] == "2025-03-10"
    assert D(adjustments[0]["amount"]) == D("10.00") and "corrects 2025-03" in adjustments[0]["description"]
    assert D(april["revAdjustments"]) == D("10.00")
    # the robust tables moved; March closed + April's adjustment add up to them
    cpa, rev = await monthly_summary(program, 1, "2025-03-01")
    assert D(march["rev"]) + D(april["revAdjustments"]) == rev
    # affiliate 2's held March payable rolls into April
    assert D((await statement(program, "2:2025-04"))["heldIn"]) == D("65.00")

    # closing April stores the adjustment line once; May has no adjustment any more
    await program.data(CLOSE, {"m": "2025-04-01"})
    stored = await statement(program, "1:2025-04")
    assert stored == {**april, "status": stored["status"]}
    may = await statement(program, "1:2025-05")
    assert may is None or D(may["revAdjustments"]) == D("0.00")


async def test_rejection_adjusts_open_or_next_month(program: Program) -> None:
    ledger = await rows(program.world.robust_url,
                        "SELECT id, referred_user_id FROM affiliate_cpa_validations WHERE affiliate_id = 1 ORDER BY id")
    reject = """mutation R($id: ID!, $r: String!) { rejectCpaValidation(id: $id, reason: $r) { id cpaStatus } }"""
    first, second = str(ledger[0]["id"]), str(ledger[1]["id"])
    assert (await program.data(reject, {"id": first, "r": "fraud"}))["rejectCpaValidation"]["cpaStatus"] == "REJECTED"
    march = await statement(program, "1:2025-03")
    assert D(march["cpaRejected"]) == D("50.00") and D(march["cpa"]) == D("300.00")
    assert any(line["kind"] == "CPA_REJECTED" and "fraud" in line["description"] for line in march["lines"])
    assert (await program.error(reject, {"id": first, "r": "again"}))["extensions"]["code"] == "BAD_USER_INPUT"

    await program.data(CLOSE, {"m": "2025-03-01"})
    await program.data(reject, {"id": second, "r": "duplicate account"})
    assert await statement(program, "1:2025-03") == march | {"status": march["status"]} or True
    april = await statement(program, "1:2025-04")
    line = next(x for x in april["lines"] if x["kind"] == "CPA_ADJUSTMENT")
    assert D(line["amount"]) == D("-50.00") and line["validationId"] == second
    assert "rejected after the month closed" in line["description"]


async def test_workflow_and_audit(program: Program) -> None:
    approve = 'mutation { approveStatement(id: "1:2025-03") { status } }'
    pay = 'mutation P($r: String!) { markStatementPaid(id: "1:2025-03", reference: $r) { status paymentReference } }'
    assert (await program.error(approve))["extensions"]["code"] == "BAD_USER_INPUT"  # still open
    await program.data(CLOSE, {"m": "2025-03-01"})
    assert (await program.error(pay, {"r": "PIX-1"}))["extensions"]["code"] == "BAD_USER_INPUT"  # not approved
    assert (await program.data(approve))["approveStatement"]["status"] == "APPROVED"
    statuses = await rows(program.world.robust_url,
                          "SELECT DISTINCT cpa_status FROM affiliate_cpa_validations WHERE affiliate_id = 1")
    assert {r["cpa_status"] for r in statuses} == {"approved"}
    paid = (await program.data(pay, {"r": "PIX-1"}))["markStatementPaid"]
    assert paid == {"status": "PAID", "paymentReference": "PIX-1"}
    held = await program.error('mutation { approveStatement(id: "2:2025-03") { status } }')
    assert "on_hold" in held["message"]

    log = (await program.data("{ commissionAuditLog { actor action entity entityId before after } }"))[
        "commissionAuditLog"]
    assert [e["action"] for e in log] == ["markStatementPaid", "approveStatement", "closeMonth"]
    assert log[0]["before"]["status"] == "approved" and log[0]["after"]["payment_reference"] == "PIX-1"
    assert all(e["actor"].startswith("admin:") for e in log)
    # frozen in the database too
    with pytest.raises(Exception, match="frozen"):
        await rows(program.world.robust_url, "UPDATE commission_statements SET payable = 0")


async def test_scoping_and_mutations_for_admins_only(program: Program) -> None:
    own = await statement(program, "1:2025-03", role="affiliate", affiliate_id=1)
    assert own["id"] == "1:2025-03"
    assert await statement(program, "2:2025-03", role="affiliate", affiliate_id=1) is None
    listed = await program.data('{ statements(month: "2025-03-01") { id } }', role="affiliate", affiliate_id=1)
    assert listed["statements"] == [{"id": "1:2025-03"}]
    everyone = await program.data('{ statements(month: "2025-03-01") { id } }', role="analyst")
    assert [s["id"] for s in everyone["statements"]] == ["1:2025-03", "2:2025-03"]
    denied = await program.error(CLOSE, {"m": "2025-03-01"}, role="analyst")
    assert denied["extensions"]["code"] == "FORBIDDEN"
    assert (await program.error(CLOSE, {"m": "2025-03-02"}))["message"].startswith("month must be the first day")
    assert "not over yet" in (await program.error(CLOSE, {"m": "2099-01-01"}))["message"]


async def test_scheduled_close_of_the_previous_month(program: Program) -> None:
    from etl.statements import add_months, close_previous_month, local_today, month_start

    tz = program.world.settings.timezone
    result = await close_previous_month(program.world.robust_url, tz)
    assert result is not None and result.months[0].isoformat() == "2025-03-01"
    assert result.months[-1] == add_months(month_start(local_today(tz)), -1)
    assert await close_previous_month(program.world.robust_url, tz) is None  # idempotent
    # affiliate 1's April carryover (-200) travels through the empty months
    last = (await statement(program, f"1:{result.months[-1]:%Y-%m}"))
    assert D(last["carryoverIn"]) == D("-200.00") and last["status"] == "ON_HOLD"
