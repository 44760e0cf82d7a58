"""Statements end to end: open = robust tables, close freezes, late data and rejections
become adjustments in the next open month, minimum payout hold, the workflow, scoping."""

from __future__ import annotations

from datetime import date
from decimal import Decimal as D

import pytest

from tests.support.deployment import rows
from tests.support.factories import Operation
from tests.support.program import Program, past_plan

STATEMENT = """
query S($id: ID!) { statement(id: $id) {
  id: statementId status month cpaValidated cpaRejected cpa rev cpaAdjustments revAdjustments carryoverIn
  revPayable carryoverOut heldIn payable heldOut belowMinPayout minPayout paymentReference
  lines { kind amount level day validationId referredUserId correctsMonth description }
} }"""
CLOSE = "mutation C($m: Date!) { closeMonth(month: $m) { months statements lines } }"


async def statement(program: Program, id: str, **kw: object) -> dict:
    return (await program.data(STATEMENT, {"id": id}, **kw))["statement"]


async def monthly_summary(program: Program, affiliate_id: int, month: str) -> tuple[D, D]:
    found = await rows(program.deployment.robust_url,
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
    op = await Operation.open(program.deployment.operation_url)
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
    ledger = await rows(program.deployment.robust_url,
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
    statuses = await rows(program.deployment.robust_url,
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
        await rows(program.deployment.robust_url, "UPDATE commission_statements SET payable = 0")


async def test_scoping_and_mutations_for_admins_only(program: Program) -> None:
    own = await statement(program, "1:2025-03", role="affiliate", affiliate_id=1)
    assert own["id"] == "1:2025-03"
    assert await statement(program, "2:2025-03", role="affiliate", affiliate_id=1) is None
    listed = await program.data('{ statements(month: "2025-03-01") { id: statementId } }', role="affiliate", affiliate_id=1)
    assert listed["statements"] == [{"id": "1:2025-03"}]
    everyone = await program.data('{ statements(month: "2025-03-01") { id: statementId } }', role="analyst")
    assert [s["id"] for s in everyone["statements"]] == ["1:2025-03", "2:2025-03"]
    denied = await program.error(CLOSE, {"m": "2025-03-01"}, role="analyst")
    assert denied["extensions"]["code"] == "FORBIDDEN"
    assert (await program.error(CLOSE, {"m": "2025-03-02"}))["message"].startswith("month must be the first day")
    assert "not over yet" in (await program.error(CLOSE, {"m": "2099-01-01"}))["message"]


async def test_scheduled_close_of_the_previous_month(program: Program) -> None:
    from commissions.months import add_months, local_today, month_start
    from commissions.service import close_previous_month

    tz = program.deployment.settings.timezone
    result = await close_previous_month(program.deployment.robust_url, tz)
    assert result is not None and result.months[0].isoformat() == "2025-03-01"
    assert result.months[-1] == add_months(month_start(local_today(tz)), -1)
    assert await close_previous_month(program.deployment.robust_url, tz) is None  # idempotent
    # affiliate 1's April carryover (-200) travels through the empty months
    last = (await statement(program, f"1:{result.months[-1]:%Y-%m}"))
    assert D(last["carryoverIn"]) == D("-200.00") and last["status"] == "ON_HOLD"


async def test_concurrent_closes_of_one_month_give_one_clear_refusal(program: Program) -> None:
    """Two closes racing (the scheduled job and an admin): the one that waited for the lock
    sees the month closed and refuses it clearly, it does not trip over the other's rows."""
    import asyncio

    import asyncpg

    from commissions.errors import WorkflowConflict
    from commissions.service import close_month

    tz = program.deployment.settings.timezone
    conns = [await asyncpg.connect(program.deployment.robust_url) for _ in range(2)]
    try:
        results = await asyncio.gather(
            *(close_month(conn, tz, date(2025, 3, 1), f"admin:{i}") for i, conn in enumerate(conns)),
            return_exceptions=True)
    finally:
        for conn in conns:
            await conn.close()
    refused = [r for r in results if isinstance(r, Exception)]
    assert len(refused) == 1, results
    assert isinstance(refused[0], WorkflowConflict) and "already closed" in str(refused[0]), refused
    stored = await rows(program.deployment.robust_url, "SELECT count(*) AS n FROM commission_statements")
    assert stored[0]["n"] == 2


LIST = """query L($m: Date!) { statements(month: $m, first: 100) {
  id: statementId status planVersionId cpaValidated cpaRejected cpa rev cpaAdjustments revAdjustments carryoverIn revPayable
  carryoverOut heldIn payable heldOut belowMinPayout lines { kind amount day validationId } } }"""


async def test_open_statements_are_what_closing_stores(program: Program) -> None:
    """With March and April open, April lists what closing April will store: affiliate 2 was
    paid in full in March (its plan has no minimum), so it has no April statement at all
    (not one made of zeros that would vanish when March closes)."""
    await past_plan(program.deployment.robust_url, 2, [{"effective_from": "1900-01-01", "min_payout": "0.00"}])
    assert D((await statement(program, "2:2025-03"))["payable"]) == D("65.00")  # paid, not held
    open_april = (await program.data(LIST, {"m": "2025-04-01"}))["statements"]
    assert [s["id"] for s in open_april] == ["1:2025-04"]
    assert await statement(program, "2:2025-04") is None

    await program.data(CLOSE, {"m": "2025-04-01"})  # closes March, then April
    closed_april = (await program.data(LIST, {"m": "2025-04-01"}))["statements"]
    assert [{**s, "status": "OPEN"} for s in closed_april] == open_april
    assert closed_april[0]["status"] == "ON_HOLD"


async def test_terms_of_the_last_day_rev_by_day_cpa_by_t_star_and_the_held_chain(program: Program) -> None:
    """Affiliate 2's own plan changes on 15 April: REV share 50% and CPA 80.00 at level 1,
    negative carryover off, minimum payout 10.00. March (terms of 31 March: minimum 300) holds
    its 65.00; April settles under the terms of 30 April; approving April approves what it
    pays, the held March included; a rejection after that is recovered in May."""
    march_terms, april_terms = await past_plan(program.deployment.robust_url, 2, [
        {"effective_from": "1900-01-01"},
        {"effective_from": "2025-04-15", "cpa_level_1": "80.00", "rev_share_level_1": "0.50",
         "negative_carryover": False, "min_payout": "10.00"}])
    op = await Operation.open(program.deployment.operation_url)
    try:
        await op.user(22, at="2025-04-01 12:00Z")
        await op.track(22, 2, "2025-04-01 12:00Z")
        await op.deposit(22, "50.00", "2025-04-02 12:00Z")
        await op.bet(22, "100.00", "500.00", "2025-04-10 13:00Z")  # GGR -400 at 25%: REV -100.00
        await op.bet(22, "100.00", "0.00", "2025-04-20 13:00Z")  # GGR 100 at 50%: REV 50.00; qualifies
    finally:
        await op.close()
    await program.etl(full=True)

    march = await statement(program, "2:2025-03")
    assert march["status"] == "OPEN" and D(march["heldOut"]) == D("65.00") and march["belowMinPayout"]
    assert D(march["minPayout"]) == D("300.00")
    april = (await program.data(LIST, {"m": "2025-04-01"}))["statements"][1]
    assert april["id"] == "2:2025-04" and april["planVersionId"] == str(april_terms)
    rev_lines = sorted((line["day"], line["amount"]) for line in april["lines"] if line["kind"] == "REV")
    assert rev_lines == [("2025-04-10", "-100.00"), ("2025-04-20", "50.00")]  # each day at its rate
    assert D(april["cpa"]) == D("80.00")  # the CPA of the version in force at t* (20 April)
    # carryover off on 30 April: the negative REV counts as zero and nothing is carried
    assert (D(april["rev"]), D(april["revPayable"]), D(april["carryoverOut"])) == (D("-50.00"), 0, 0)
    assert D(april["heldIn"]) == D("65.00") and D(april["payable"]) == D("145.00")
    assert not april["belowMinPayout"]

    await program.data(CLOSE, {"m": "2025-04-01"})
    stored_march = (await program.data(LIST, {"m": "2025-03-01"}))["statements"][1]
    assert stored_march["status"] == "ON_HOLD" and stored_march["planVersionId"] == str(march_terms)
    approved = await program.data('mutation { approveStatement(id: "2:2025-04") { status payable } }')
    assert approved["approveStatement"] == {"status": "APPROVED", "payable": "145.00"}
    ledger = await rows(program.deployment.robust_url,
                        "SELECT id, referred_user_id, cpa_status FROM affiliate_cpa_validations "
                        "WHERE affiliate_id = 2 ORDER BY referred_user_id")
    assert [(r["referred_user_id"], r["cpa_status"]) for r in ledger] == [(21, "approved"), (22, "approved")]

    # rejected after its statement was approved: May recovers it, the paid April stays as it was
    reject = 'mutation R($id: ID!) { rejectCpaValidation(id: $id, reason: "chargeback") { cpaStatus } }'
    await program.data(reject, {"id": str(ledger[0]["id"])})
    await program.data('mutation { markStatementPaid(id: "2:2025-04", reference: "PIX-2") { status } }')
    statuses = await rows(program.deployment.robust_url, "SELECT referred_user_id, cpa_status FROM "
                          "affiliate_cpa_validations WHERE affiliate_id = 2 ORDER BY referred_user_id")
    assert [r["cpa_status"] for r in statuses] == ["rejected", "paid"]
    may = await statement(program, "2:2025-05")
    assert D(may["cpaAdjustments"]) == D("-50.00") and D(may["payable"]) == D("-50.00")
    assert may["belowMinPayout"] and D(may["heldOut"]) == D("-50.00")  # recovered from later months
    assert "rejected after the month closed" in may["lines"][0]["description"]


async def test_a_page_reads_on_past_affiliates_with_nothing_in_the_month(program: Program) -> None:
    """Affiliates 901-904 earned (and were paid) REV in March only, 905 earns in April: the
    April page after affiliate 2 skips them, however many rows that takes, and finds 905."""
    await rows(program.deployment.robust_url, """
        INSERT INTO etl.affiliate_level_periods (affiliate_id, period_type, period_start, level, new_referrals,
            deposits, deposit_count, withdrawals, withdrawal_count, stake, win, bet_count, cpa, validations, rev)
        SELECT a, 'daily', CASE WHEN a = 905 THEN DATE '2025-04-10' ELSE DATE '2025-03-10' END, 1, 0, 0, 0, 0,
               0, 1600, 0, 1, 0, 0, 400.00
        FROM generate_series(901, 905) AS a""")
    full = (await program.data('{ statements(month: "2025-04-01", first: 100) { id: statementId } }'))["statements"]
    assert [s["id"] for s in full] == ["1:2025-04", "2:2025-04", "905:2025-04"]
    for first in (1, 2):
        page = await program.data('query P($n: Int) { statements(month: "2025-04-01", first: $n, after: "2") '
                                  '{ id: statementId payable } }', {"n": first})
        assert page["statements"] == [{"id": "905:2025-04", "payable": "400.00"}]
    march = (await program.data('{ statements(month: "2025-03-01", first: 3, after: "2") { id: statementId } }'))["statements"]
    assert [s["id"] for s in march] == ["901:2025-03", "902:2025-03", "903:2025-03"]
