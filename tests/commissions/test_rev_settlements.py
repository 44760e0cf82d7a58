"""Corrections with negative carryover on (issue 14): the corrected month and the closed months
after it are settled again in order, the first open month pays the difference and carries in
what the chain carries out; what was settled again is stored, so the next correction starts
from it. Every statement read here is checked to add up (tests/commissions/statement_checks.py)."""

from __future__ import annotations

from decimal import Decimal as D

from tests.commissions.statement_checks import (
    close,
    month_statements,
    rev_adjustments,
    settlement_text,
    settlements,
    statement,
)
from tests.commissions.test_rev_corrections import rev_day
from tests.support.deployment import rows
from tests.support.program import Program, past_plan

ON = [{"effective_from": "1900-01-01", "negative_carryover": True, "min_payout": "0.00"}]


async def pay(program: Program, id: str) -> None:
    await program.data("mutation A($id: ID!) { approveStatement(id: $id) { status } }", {"id": id})
    await program.data('mutation P($id: ID!) { markStatementPaid(id: $id, reference: "PIX") { status } }',
                       {"id": id})


async def test_the_issues_example_and_a_second_correction(program: Program) -> None:
    """November closed with a REV balance of +65 and was paid 65; a late bet adds +100 to
    November while December's own REV is -300 (minimum payout 0). November settled again pays
    165: December pays 100 and carries -300 (it used to pay 0 and carry -200).

    Then, December closed, November loses 200 on another day: it is settled again from what
    December stored (165 paid, not 65): it now pays nothing (-165) and carries -35, so
    December's -300 becomes -335 carried (paying nothing, as before): January takes back 165
    and carries -335 in."""
    await past_plan(program.deployment.robust_url, 901, ON)
    await rev_day(program, 901, "2025-11-10", "65.00")
    await close(program, "2025-11-01")
    november = await statement(program, "901:2025-11")
    assert (D(november["revPayable"]), D(november["payable"])) == (D("65.00"), D("65.00"))
    await pay(program, "901:2025-11")

    await rev_day(program, 901, "2025-12-05", "-300.00")
    await rev_day(program, 901, "2025-11-10", "165.00")  # late: +100
    december = await statement(program, "901:2025-12")
    assert rev_adjustments(december) == [("2025-11-10", "100.00")]
    assert settlements(december) == [("2025-11-01", "100.00")]
    assert settlement_text(december, "2025-11-01") == (
        "2025-11 settled again: REV balance 65.00 -> 165.00 (carried in 0.00, REV 165.00), negative "
        "carryover on: paid 65.00, now 165.00, pays 100.00; carries 0.00 (was 0.00)")
    assert (D(december["carryoverIn"]), D(december["rev"]), D(december["revSettlements"])) == (
        0, D("-300.00"), D("100.00"))
    assert (D(december["revPayable"]), D(december["payable"]), D(december["carryoverOut"])) == (
        D("100.00"), D("100.00"), D("-300.00"))
    assert not december["belowMinPayout"]
    await close(program, "2025-12-01")
    assert await statement(program, "901:2025-12") == {**december, "status": "CLOSED"}
    assert await statement(program, "901:2025-11") == {**november, "status": "PAID"}  # frozen

    await rev_day(program, 901, "2025-11-20", "-200.00")
    january = await statement(program, "901:2026-01")
    assert rev_adjustments(january) == [("2025-11-20", "-200.00")]
    assert settlements(january) == [("2025-11-01", "-165.00"), ("2025-12-01", "0.00")]
    assert "REV balance 165.00 -> -35.00" in settlement_text(january, "2025-11-01")
    assert "paid 165.00, now 0.00, pays -165.00; carries -35.00 (was 0.00)" in settlement_text(
        january, "2025-11-01")
    assert settlement_text(january, "2025-12-01").endswith("pays 0.00; carries -335.00 (was -300.00)")
    assert (D(january["carryoverIn"]), D(january["revPayable"]), D(january["payable"])) == (
        D("-335.00"), D("-165.00"), D("-165.00"))
    assert january["belowMinPayout"] and D(january["heldOut"]) == D("-165.00")
    await close(program, "2026-01-01")
    assert await statement(program, "901:2026-01") == {**january, "status": "ON_HOLD"}
    stored = await rows(program.deployment.robust_url,
                        "SELECT to_char(month, 'YYYY-MM') AS month, to_char(for_month, 'YYYY-MM') AS for_month, "
                        "carryover_in, rev, rev_paid, carryover_out, previously_paid, amount "
                        "FROM commission_rev_settlements WHERE affiliate_id = 901 ORDER BY month, for_month")
    assert [tuple(r) for r in stored] == [
        ("2025-12", "2025-11", 0, D("165.00"), D("165.00"), 0, D("65.00"), D("100.00")),
        ("2026-01", "2025-11", 0, D("-35.00"), 0, D("-35.00"), D("165.00"), D("-165.00")),
        ("2026-01", "2025-12", D("-35.00"), D("-300.00"), 0, D("-335.00"), 0, 0),
    ]
    for month in ("2025-11-01", "2025-12-01", "2026-01-01", "2026-02-01"):
        await month_statements(program, month)


async def test_a_correction_of_an_older_month_changes_the_months_after_it(program: Program) -> None:
    """September carried -100 into October (+150: paid 50), November paid its +30. September
    loses 100 more: it carries -200, October now carries -50 and pays nothing, November takes
    the -50 in and pays nothing either. December (own REV +200) takes back 80, carries -20 in:
    pays 180 - 80 = 100. 903's plan has carryover off from November: November keeps its 30 and
    carries nothing, so December takes back only October's 50 and starts from nothing."""
    await past_plan(program.deployment.robust_url, 902, ON)
    await past_plan(program.deployment.robust_url, 903, [
        ON[0], {"effective_from": "2025-11-01", "negative_carryover": False, "min_payout": "0.00"}])
    for affiliate_id in (902, 903):
        for day, rev in [("2025-09-10", "-100.00"), ("2025-10-10", "150.00"), ("2025-11-10", "30.00")]:
            await rev_day(program, affiliate_id, day, rev)
    await close(program, "2025-11-01")
    for affiliate_id in (902, 903):
        closed = [await statement(program, f"{affiliate_id}:2025-{m}") for m in ("09", "10", "11")]
        assert [D(s["revPayable"]) for s in closed] == [0, D("50.00"), D("30.00")]
        await rev_day(program, affiliate_id, "2025-09-10", "-200.00")
        await rev_day(program, affiliate_id, "2025-12-10", "200.00")

    on = await statement(program, "902:2025-12")
    assert settlements(on) == [("2025-09-01", "0.00"), ("2025-10-01", "-50.00"), ("2025-11-01", "-30.00")]
    assert settlement_text(on, "2025-10-01").endswith("pays -50.00; carries -50.00 (was 0.00)")
    assert settlement_text(on, "2025-11-01").endswith("pays -30.00; carries -20.00 (was 0.00)")
    assert (D(on["carryoverIn"]), D(on["revSettlements"]), D(on["revPayable"]), D(on["payable"])) == (
        D("-20.00"), D("-80.00"), D("100.00"), D("100.00"))
    assert D(on["carryoverOut"]) == 0

    switched = await statement(program, "903:2025-12")
    assert settlements(switched) == [("2025-09-01", "0.00"), ("2025-10-01", "-50.00")]
    assert (D(switched["carryoverIn"]), D(switched["revPayable"]), D(switched["payable"])) == (
        0, D("150.00"), D("150.00"))
    await close(program, "2025-12-01")
    assert await statement(program, "902:2025-12") == {**on, "status": "CLOSED"}
    assert await statement(program, "903:2025-12") == {**switched, "status": "CLOSED"}
    for month in ("2025-09-01", "2025-10-01", "2025-11-01", "2025-12-01", "2026-01-01"):
        await month_statements(program, month)
