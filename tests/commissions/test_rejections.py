"""Rejections after payment (a chargeback), rejecting all of a user's rows at once, and the
validations a statement on hold at 0.00 pays (issue 14). Every statement read here is checked
to add up (tests/commissions/statement_checks.py)."""

from __future__ import annotations

from decimal import Decimal as D
from typing import Any

from tests.commissions.statement_checks import close, month_statements, statement
from tests.commissions.test_rev_settlements import pay
from tests.support.deployment import rows
from tests.support.factories import Operation
from tests.support.program import Program, past_plan

REJECT = """mutation R($id: ID!, $r: String!) { rejectCpaValidation(id: $id, reason: $r) {
  id: validationId cpaStatus cpaAmount } }"""
REJECT_USER = """mutation U($u: ID!, $r: String!) { rejectUserCpaValidations(userId: $u, reason: $r) {
  id: validationId affiliateId referredUserId cpaLevel cpaAmount cpaStatus } }"""
AUDIT = "{ commissionAuditLog(entity: \"cpa_validation\") { actor action entityId before after } }"


async def ledger(program: Program, affiliate_id: int) -> list[Any]:
    return await rows(program.deployment.robust_url,
                      "SELECT id, referred_user_id, cpa_level, cpa_amount, cpa_status FROM affiliate_cpa_validations "
                      "WHERE affiliate_id = $1 ORDER BY referred_user_id, id", affiliate_id)


async def test_a_paid_validation_is_rejected_and_recovered_in_the_open_month(program: Program) -> None:
    """Affiliate 1's March (7 x 50.00 CPA + 105.00 REV) is closed and paid; a chargeback on
    user 11 is found after that. The paid validation is rejected: April (REV -200, carried)
    recovers the 50.00 as a negative CPA adjustment; April's payable (-50.00) is below the
    minimum, so it is held and recovered from the months after. March stays as it was paid."""
    await close(program, "2025-03-01")
    await pay(program, "1:2025-03")
    march = await statement(program, "1:2025-03")
    paid = (await ledger(program, 1))[0]
    assert (paid["referred_user_id"], paid["cpa_status"]) == (11, "paid")

    rejected = (await program.data(REJECT, {"id": str(paid["id"]), "r": "chargeback"}))["rejectCpaValidation"]
    assert rejected == {"id": str(paid["id"]), "cpaStatus": "REJECTED", "cpaAmount": "50.00"}
    assert await statement(program, "1:2025-03") == march  # paid and frozen
    april = await statement(program, "1:2025-04")
    [line] = [x for x in april["lines"] if x["kind"] == "CPA_ADJUSTMENT"]
    assert (D(line["amount"]), line["validationId"], line["correctsMonth"]) == (
        D("-50.00"), str(paid["id"]), "2025-03-01")
    assert "was rejected after the month closed" in line["description"]
    assert (D(april["cpaAdjustments"]), D(april["rev"]), D(april["carryoverOut"])) == (
        D("-50.00"), D("-200.00"), D("-200.00"))
    assert D(april["payable"]) == D("-50.00") and april["belowMinPayout"]
    assert D(april["heldOut"]) == D("-50.00")

    log = (await program.data(AUDIT))["commissionAuditLog"]
    assert log[0]["action"] == "rejectCpaValidation" and log[0]["entityId"] == str(paid["id"])
    assert log[0]["before"]["cpa_status"] == "paid"
    assert log[0]["after"]["cpa_status"] == "rejected" and log[0]["after"]["reason"] == "chargeback"
    assert log[0]["actor"].startswith("admin:")
    again = await program.error(REJECT, {"id": str(paid["id"]), "r": "again"})
    assert again["extensions"]["code"] == "BAD_USER_INPUT" and "already rejected" in again["message"]

    await close(program, "2025-04-01")
    may = await statement(program, "1:2025-05")
    assert D(may["heldIn"]) == D("-50.00") and D(may["carryoverIn"]) == D("-200.00")
    assert (await ledger(program, 1))[0]["cpa_status"] == "rejected"  # the workflow never revives it


async def test_reject_every_row_of_a_user(program: Program) -> None:
    """User 31 is referred by affiliate 3, itself referred by affiliate 1: it validates at
    level 1 for 3 (50.00) and level 2 for 1 (20.00). With March closed and 1's March paid,
    rejecting the user rejects both rows; each affiliate's April recovers its amount, and the
    audit log has one entry per validation."""
    op = await Operation.open(program.deployment.operation_url)
    try:
        await op.user(3, "Caio Afiliado", afiliado=True, at="2025-03-01 10:00Z")
        await op.track(3, 1, "2025-03-01 10:00Z")
        await op.user(31, at="2025-03-01 12:00Z")
        await op.track(31, 3, "2025-03-01 12:00Z")
        await op.deposit(31, "50.00", "2025-03-02 12:00Z")
        await op.bet(31, "60.00", "60.00", "2025-03-02 13:00Z")
        await op.bet(31, "60.00", "60.00", "2025-03-03 13:00Z")
    finally:
        await op.close()
    await program.etl(full=True)
    before = {a: [dict(r) for r in await ledger(program, a) if r["referred_user_id"] == 31] for a in (1, 3)}
    assert [(r["cpa_level"], r["cpa_amount"]) for a in (1, 3) for r in before[a]] == [
        (2, D("20.00")), (1, D("50.00"))]
    await close(program, "2025-03-01")
    await pay(program, "1:2025-03")

    denied = await program.error(REJECT_USER, {"u": "31", "r": "fraud ring"}, role="analyst")
    assert denied["extensions"]["code"] == "FORBIDDEN"
    rejected = (await program.data(REJECT_USER, {"u": "31", "r": "fraud ring"}))["rejectUserCpaValidations"]
    assert [(r["affiliateId"], r["referredUserId"], r["cpaLevel"], r["cpaStatus"]) for r in rejected] == sorted(
        [("1", "31", 2, "REJECTED"), ("3", "31", 1, "REJECTED")],
        key=lambda r: [x["id"] for x in before[int(r[0])]][0])
    for affiliate_id, amount in [(1, "-20.00"), (3, "-50.00")]:
        april = await statement(program, f"{affiliate_id}:2025-04")
        [line] = [x for x in april["lines"] if x["kind"] == "CPA_ADJUSTMENT"]
        assert line["referredUserId"] == "31" and D(line["amount"]) == D(amount)
    log = (await program.data(AUDIT))["commissionAuditLog"]
    entries = [e for e in log if e["action"] == "rejectUserCpaValidations"]
    assert sorted(e["entityId"] for e in entries) == sorted(r["id"] for r in rejected)
    assert {e["before"]["cpa_status"] for e in entries} == {"paid", "pending"}
    assert {e["after"]["reason"] for e in entries} == {"fraud ring"}

    again = await program.error(REJECT_USER, {"u": "31", "r": "again"})
    assert again["extensions"]["code"] == "BAD_USER_INPUT" and "already rejected" in again["message"]
    unknown = await program.error(REJECT_USER, {"u": "999", "r": "who"})
    assert "has no CPA validations" in unknown["message"]
    blank = await program.error(REJECT_USER, {"u": "31", "r": "  "})
    assert "reason must not be empty" in blank["message"]


async def zero_cpa_plan(program: Program) -> None:
    """Affiliate 5 on a plan paying no CPA until May 2025 (50.00 from then), minimum payout 0."""
    await past_plan(program.deployment.robust_url, 5, [
        {"effective_from": "1900-01-01", "cpa_level_1": "0.00", "rev_share_level_1": "0.00", "min_payout": "0.00"},
        {"effective_from": "2025-05-01", "cpa_level_1": "50.00", "rev_share_level_1": "0.00",
         "min_payout": "0.00"}])


async def qualify_51_and_52(program: Program) -> None:
    """Affiliate 5's users 51 (qualifies in March 2025: CPA 0.00) and 52 (in May: 50.00)."""
    op = await Operation.open(program.deployment.operation_url)
    try:
        await op.user(5, "Eva Afiliada", afiliado=True)
        for user, month in [(51, "03"), (52, "05")]:
            await op.user(user, at=f"2025-{month}-01 12:00Z")
            await op.track(user, 5, f"2025-{month}-01 12:00Z")
            await op.deposit(user, "50.00", f"2025-{month}-02 12:00Z")
            await op.bet(user, "60.00", "20.00", f"2025-{month}-02 13:00Z")
            await op.bet(user, "60.00", "40.00", f"2025-{month}-03 13:00Z")
    finally:
        await op.close()


async def test_a_statement_on_hold_at_zero_moves_its_validations_with_the_one_that_pays_it(
        program: Program) -> None:
    """Affiliate 5's plan pays no CPA and no REV until May (minimum payout 0). March: user 51
    validates at 0.00, so March is on hold at exactly 0.00 and carries nothing: April has no
    statement. May: user 52 validates at 50.00 and May is closed. Approving and paying May
    moves March's validation along with May's, across the month without a statement."""
    await zero_cpa_plan(program)
    await qualify_51_and_52(program)
    await program.etl(full=True)
    assert [(r["referred_user_id"], r["cpa_amount"]) for r in await ledger(program, 5)] == [
        (51, D("0.00")), (52, D("50.00"))]

    await close(program, "2025-05-01")
    march = await statement(program, "5:2025-03")
    assert march["status"] == "ON_HOLD" and D(march["payable"]) == 0 and D(march["heldOut"]) == 0
    assert [(x["kind"], x["amount"]) for x in march["lines"]] == [("CPA", "0.00")]
    assert await statement(program, "5:2025-04") is None
    may = await statement(program, "5:2025-05")
    assert may["status"] == "CLOSED" and D(may["payable"]) == D("50.00") and D(may["heldIn"]) == 0

    await program.data('mutation { approveStatement(id: "5:2025-05") { status } }')
    assert [r["cpa_status"] for r in await ledger(program, 5)] == ["approved", "approved"]
    await program.data('mutation { markStatementPaid(id: "5:2025-05", reference: "PIX-5") { status } }')
    assert [r["cpa_status"] for r in await ledger(program, 5)] == ["paid", "paid"]
    for month in ("2025-03-01", "2025-04-01", "2025-05-01", "2025-06-01"):
        await month_statements(program, month)


async def test_a_late_validation_at_zero_is_listed_and_paid_with_its_statement(program: Program) -> None:
    """A validation dated in a closed month that arrives late at 0.00 gets its adjustment line
    (0.00) like any other: April lists it and is on hold at 0.00; approving May (user 52 at
    50.00) moves it along with May's own."""
    await zero_cpa_plan(program)
    await close(program, "2025-03-01")
    await qualify_51_and_52(program)
    await program.etl(full=True)
    april = await statement(program, "5:2025-04")
    assert [(x["kind"], x["amount"], x["correctsMonth"]) for x in april["lines"]] == [
        ("CPA_ADJUSTMENT", "0.00", "2025-03-01")]
    assert "arrived after the month closed" in april["lines"][0]["description"]
    await close(program, "2025-05-01")
    assert (await statement(program, "5:2025-04"))["status"] == "ON_HOLD"  # at 0.00
    await pay(program, "5:2025-05")
    assert [(r["referred_user_id"], r["cpa_status"]) for r in await ledger(program, 5)] == [
        (51, "paid"), (52, "paid")]
