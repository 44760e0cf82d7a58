"""Late REV corrections of closed months: a correction belongs to the month it corrects.

The corrected month and the closed months after it are settled again in order with the
corrected REV, each by its own carryover rule; the first open month pays (or recovers) the
difference in what they were paid, on one REV settlement line per month whose settlement
changed, and its carried-in balance is what the last closed month, settled again, carries out.
With carryover off that is max(0, the month's REV now) - max(0, its REV as settled before).
"""

from __future__ import annotations

from decimal import Decimal as D

from tests.commissions.statement_checks import (
    close,
    rev_adjustments,
    settlement_text,
    settlements,
    statement,
)
from tests.support.deployment import rows
from tests.support.factories import Operation
from tests.support.program import Program, past_plan

OFF = [{"effective_from": "1900-01-01", "negative_carryover": False, "min_payout": "0.00"}]
ON = [{"effective_from": "1900-01-01", "negative_carryover": True, "min_payout": "0.00"}]


async def rev_day(program: Program, affiliate_id: int, day: str, rev: str) -> None:
    """The daily REV of level 1 as the ETL writes it (GGR at the default 25%): setting it
    again is late data for that day."""
    await rows(program.deployment.robust_url, """
        INSERT INTO etl.affiliate_level_periods (affiliate_id, period_type, period_start, level, new_referrals,
            deposits, deposit_count, withdrawals, withdrawal_count, stake, win, bet_count, cpa, validations, rev)
        VALUES ($1, 'daily', $2::text::date, 1, 0, 0, 0, 0, 0, greatest($3::text::numeric * 4, 0),
                greatest(-$3::text::numeric * 4, 0), 1, 0, 0, $3::text::numeric)
        ON CONFLICT (affiliate_id, period_type, period_start, level)
        DO UPDATE SET stake = EXCLUDED.stake, win = EXCLUDED.win, rev = EXCLUDED.rev""",
        affiliate_id, day, rev)


async def test_a_correction_of_a_forgiven_negative_month_pays_only_what_the_month_earns(
        program: Program) -> None:
    """The example of the rule, through the real ETL: affiliate 1 (carryover off) closed
    April with REV -200.00, paid 0; a late bet makes April's REV +100.00. May pays 100.00,
    not the 300.00 of the raw change, whatever May's own REV."""
    await past_plan(program.deployment.robust_url, 1, OFF)
    await close(program, "2025-04-01")
    april = await statement(program, "1:2025-04")
    assert (D(april["rev"]), D(april["revPayable"]), D(april["payable"])) == (D("-200.00"), 0, 0)

    op = await Operation.open(program.deployment.operation_url)
    try:
        await op.bet(18, "1200.00", "0.00", "2025-04-02 14:00Z")  # same day: GGR +1200, REV +300.00
        await op.user(31, at="2025-05-01 12:00Z")
        await op.track(31, 1, "2025-05-01 12:00Z")
        await op.bet(31, "100.00", "2100.00", "2025-05-05 13:00Z")  # May's own REV: -500.00
    finally:
        await op.close()
    await program.etl(full=True)

    assert await statement(program, "1:2025-04") == april  # closed: frozen
    may = await statement(program, "1:2025-05")
    assert rev_adjustments(may) == [("2025-04-02", "300.00")]  # the raw change
    line = next(x for x in may["lines"] if x["kind"] == "REV_ADJUSTMENT")
    assert line["correctsMonth"] == "2025-04-01" and line["amountPaid"] is None
    assert line["description"].startswith("corrects 2025-04: REV level 1 on 2025-04-02 was -200.00")
    assert settlements(may) == [("2025-04-01", "100.00")]  # what April, settled again, pays
    text = settlement_text(may, "2025-04-01")
    assert text.startswith("2025-04 settled again: REV balance -200.00 -> 100.00")
    assert "negative carryover off: paid 0.00, now 100.00, pays 100.00" in text
    assert D(may["rev"]) == D("-500.00") and D(may["revAdjustments"]) == D("300.00")
    assert D(may["revSettlements"]) == D("100.00")
    assert D(may["revPayable"]) == D("100.00") and D(may["payable"]) == D("100.00")
    assert not may["belowMinPayout"] and D(may["carryoverOut"]) == 0
    # the books still add up: April as closed + its later adjustments = the robust tables' April
    summary = await rows(program.deployment.robust_url,
                         "SELECT rev_earned FROM affiliate_periodic_summaries WHERE affiliate_id = 1 "
                         "AND period_type = 'monthly' AND period_start = DATE '2025-04-01'")
    assert D(april["rev"]) + D(may["revAdjustments"]) == summary[0]["rev_earned"] == D("100.00")

    # closing May stores what the open May showed, its settlement lines included
    await close(program, "2025-05-01")
    stored = await statement(program, "1:2025-05")
    assert stored == {**may, "status": "CLOSED"}


async def test_corrections_of_a_month_settled_with_carryover_off(program: Program) -> None:
    """Affiliates 901-903 on carryover off, each with one March day of REV, closed; then that
    day changes. 901: -200 -> +100 pays 100; 902: +100 -> -200 claws back 100 (the payable
    goes negative and rolls over); 903: -200 -> -250 changes nothing paid."""
    cases = {901: ("-200.00", "100.00"), 902: ("100.00", "-200.00"), 903: ("-200.00", "-250.00")}
    for affiliate_id, (before, _) in cases.items():
        await past_plan(program.deployment.robust_url, affiliate_id, OFF)
        await rev_day(program, affiliate_id, "2025-03-10", before)
    await close(program, "2025-03-01")
    closed = {a: await statement(program, f"{a}:2025-03") for a in cases}
    assert [D(closed[a]["revPayable"]) for a in cases] == [0, D("100.00"), 0]
    for affiliate_id, (_, after) in cases.items():
        await rev_day(program, affiliate_id, "2025-03-10", after)

    for affiliate_id, change, paid in [(901, "300.00", "100.00"), (902, "-300.00", "-100.00"),
                                       (903, "-50.00", "0.00")]:
        assert await statement(program, f"{affiliate_id}:2025-03") == closed[affiliate_id]  # frozen
        april = await statement(program, f"{affiliate_id}:2025-04")
        assert rev_adjustments(april) == [("2025-03-10", change)], affiliate_id
        assert settlements(april) == [("2025-03-01", paid)], affiliate_id
        assert D(april["revAdjustments"]) == D(change)
        assert D(april["revPayable"]) == D(paid) and D(april["payable"]) == D(paid)
        assert D(april["carryoverOut"]) == 0
    clawed = await statement(program, "902:2025-04")
    assert clawed["belowMinPayout"] and D(clawed["heldOut"]) == D("-100.00")  # recovered later
    assert "paid 100.00, now 0.00, pays -100.00" in settlement_text(clawed, "2025-03-01")
    assert (await statement(program, "903:2025-04"))["belowMinPayout"]


async def test_successive_corrections_of_one_month(program: Program) -> None:
    """Affiliate 901 (carryover off) closed March at REV -200. April brings +300 (March now
    +100: pays 100) and is closed; May brings -150 on the same day and +30 on another (March
    now -20: max(0, -20) - max(0, 100) = -100, from March as April settled it), added to May's
    own REV (+40) as is."""
    await past_plan(program.deployment.robust_url, 901, OFF)
    await rev_day(program, 901, "2025-03-10", "-200.00")
    await close(program, "2025-03-01")
    await rev_day(program, 901, "2025-03-10", "100.00")
    april = await statement(program, "901:2025-04")
    assert settlements(april) == [("2025-03-01", "100.00")]
    await close(program, "2025-04-01")
    assert await statement(program, "901:2025-04") == {**april, "status": "CLOSED"}

    await rev_day(program, 901, "2025-03-10", "-50.00")
    await rev_day(program, 901, "2025-03-20", "30.00")
    await rev_day(program, 901, "2025-05-05", "40.00")
    may = await statement(program, "901:2025-05")
    assert rev_adjustments(may) == [("2025-03-10", "-150.00"), ("2025-03-20", "30.00")]
    assert settlements(may) == [("2025-03-01", "-100.00")]
    assert settlement_text(may, "2025-03-01").startswith(
        "2025-03 settled again: REV balance 100.00 -> -20.00 (carried in 0.00, REV -20.00), "
        "negative carryover off: paid 100.00, now 0.00, pays -100.00")
    assert D(may["rev"]) == D("40.00") and D(may["revAdjustments"]) == D("-120.00")
    assert D(may["revPayable"]) == D("-60.00") and D(may["payable"]) == D("-60.00")
    assert may["belowMinPayout"] and D(may["heldOut"]) == D("-60.00")
    # every correction of March, stored or open, adds up to March's REV now
    assert sum(D(a) for _, a in rev_adjustments(april) + rev_adjustments(may)) == D("180.00")  # -200 -> -20
    # a closed statement shows what it was settled with, whatever came after
    await close(program, "2025-05-01")
    assert await statement(program, "901:2025-04") == {**april, "status": "CLOSED"}
    assert await statement(program, "901:2025-05") == {**may, "status": "ON_HOLD"}


async def test_corrections_with_carryover_on_settle_the_month_again(program: Program) -> None:
    """901 (carryover on) carried March's -200; +300 to March: March settled again has a
    balance of +100, pays 100 and carries nothing, so April pays 100 and carries nothing in.
    902 (on) was paid March's +100; -300 to March: March now carries -200 and pays nothing,
    so April takes back the 100 (held: the payable is negative) and carries -200 in."""
    for affiliate_id, before in [(901, "-200.00"), (902, "100.00")]:
        await past_plan(program.deployment.robust_url, affiliate_id, ON)
        await rev_day(program, affiliate_id, "2025-03-10", before)
    await close(program, "2025-03-01")
    await rev_day(program, 901, "2025-03-10", "100.00")
    await rev_day(program, 902, "2025-03-10", "-200.00")

    paid = await statement(program, "901:2025-04")
    assert rev_adjustments(paid) == [("2025-03-10", "300.00")]
    assert settlements(paid) == [("2025-03-01", "100.00")]
    assert settlement_text(paid, "2025-03-01") == (
        "2025-03 settled again: REV balance -200.00 -> 100.00 (carried in 0.00, REV 100.00), negative "
        "carryover on: paid 0.00, now 100.00, pays 100.00; carries 0.00 (was -200.00)")
    assert D(paid["carryoverIn"]) == 0 and D(paid["revPayable"]) == D("100.00")
    assert D(paid["payable"]) == D("100.00") and D(paid["carryoverOut"]) == 0
    clawed = await statement(program, "902:2025-04")
    assert rev_adjustments(clawed) == [("2025-03-10", "-300.00")]
    assert settlements(clawed) == [("2025-03-01", "-100.00")]
    assert D(clawed["carryoverIn"]) == D("-200.00") and D(clawed["carryoverOut"]) == D("-200.00")
    assert D(clawed["revPayable"]) == D("-100.00") and D(clawed["payable"]) == D("-100.00")
    assert clawed["belowMinPayout"] and D(clawed["heldOut"]) == D("-100.00")


async def test_a_correction_of_a_month_that_had_no_statement(program: Program) -> None:
    """A closed month where the affiliate had nothing (no statement stored) is settled by the
    terms in force on its last day: 901 (its own plan, carryover off) pays max(0, -50) - 0 = 0;
    904 (the default plan, carryover on) carries the -50 into April."""
    await past_plan(program.deployment.robust_url, 901, OFF)
    await close(program, "2025-03-01")
    await rev_day(program, 901, "2025-03-10", "-50.00")
    await rev_day(program, 904, "2025-03-10", "-50.00")
    off = await statement(program, "901:2025-04")
    assert rev_adjustments(off) == [("2025-03-10", "-50.00")]
    assert settlements(off) == [("2025-03-01", "0.00")]
    assert D(off["payable"]) == 0 and D(off["carryoverOut"]) == 0
    on = await statement(program, "904:2025-04")
    assert settlements(on) == [("2025-03-01", "0.00")]
    assert settlement_text(on, "2025-03-01").endswith("carries -50.00 (was 0.00)")
    assert D(on["carryoverIn"]) == D("-50.00") and D(on["carryoverOut"]) == D("-50.00")
