"""The arithmetic of a month, over sequences of months (docs/payouts.md)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal as D

from commissions.payout import Carry, MonthFigures, PayoutTerms, resettle, settle, settle_rev

ON = PayoutTerms(1, 1, True, D("300.00"))
OFF = PayoutTerms(1, 1, False, D("300.00"))


def run(terms: PayoutTerms, months: list[tuple[str, str]]) -> list[tuple[D, D, D, D, bool]]:
    """(cpa, rev) per month -> (rev_payable, carryover_out, payable, held_out, on_hold) per month."""
    carry, out = Carry(), []
    for cpa, rev in months:
        s = settle(MonthFigures(cpa_validated=D(cpa), rev=D(rev)), carry, terms)
        out.append((s.rev_payable, s.carryover_out, s.payable, s.held_out, s.on_hold))
        carry = s.carry
    return out


def test_negative_carryover_offsets_later_months() -> None:
    result = run(ON, [("400.00", "-100.00"), ("0.00", "60.00"), ("0.00", "350.00")])
    assert result[0] == (D("0.00"), D("-100.00"), D("400.00"), D("0.00"), False)
    assert result[1] == (D("0.00"), D("-40.00"), D("0.00"), D("0.00"), True)  # nothing to pay
    assert result[2] == (D("310.00"), D("0.00"), D("310.00"), D("0.00"), False)


def test_all_positive_months() -> None:
    assert [r[2] for r in run(ON, [("300.00", "10.00"), ("0.00", "500.00")])] == [D("310.00"), D("500.00")]


def test_carryover_off_counts_a_negative_month_as_zero() -> None:
    result = run(OFF, [("400.00", "-100.00"), ("0.00", "350.00")])
    assert result[0] == (D("0.00"), D("0.00"), D("400.00"), D("0.00"), False)
    assert result[1] == (D("350.00"), D("0.00"), D("350.00"), D("0.00"), False)


def test_mixed_months_and_minimum_payout_roll_over() -> None:
    result = run(ON, [("100.00", "50.00"), ("100.00", "-30.00"), ("100.00", "80.00")])
    assert result[0] == (D("50.00"), D("0.00"), D("150.00"), D("150.00"), True)
    # held 150 + cpa 100, REV -30 carried
    assert result[1] == (D("0.00"), D("-30.00"), D("250.00"), D("250.00"), True)
    # held 250 + cpa 100 + (80 - 30)
    assert result[2] == (D("50.00"), D("0.00"), D("400.00"), D("0.00"), False)


def test_rejected_cpa_and_adjustments() -> None:
    """REV adjustments (the raw change of closed months) are not part of the month's balance:
    what they pay comes in as rev_settlements, added as it is."""
    figures = MonthFigures(cpa_validated=D("400.00"), cpa_rejected=D("50.00"), rev=D("10.00"),
                           cpa_adjustments=D("-20.00"), rev_adjustments=D("-15.00"),
                           rev_settlements=D("-15.00"))
    s = settle(figures, Carry(D("-5.00"), D("0.00")), ON)
    assert s.cpa == D("350.00")
    assert s.rev_payable == D("-10.00") and s.carryover_out == D("0.00")  # max(0, -5 + 10) - 15
    assert s.payable == D("320.00") and not s.on_hold


def test_a_negative_payable_is_held_and_offsets_the_next_month() -> None:
    s = settle(MonthFigures(cpa_adjustments=D("-50.00")), Carry(), PayoutTerms(1, 1, True, D("0.00")))
    assert s.on_hold and s.held_out == D("-50.00")
    nxt = settle(MonthFigures(cpa_validated=D("70.00")), s.carry, PayoutTerms(1, 1, True, D("0.00")))
    assert nxt.payable == D("20.00") and not nxt.on_hold


def test_settlements_are_paid_as_they_are() -> None:
    """What closed months settled again pay is added as it is: not floored by this month's own
    REV, negative or not."""
    paid = MonthFigures(rev=D("-500.00"), rev_adjustments=D("300.00"), rev_settlements=D("100.00"))
    for terms in (OFF, ON):
        s = settle(paid, Carry(), terms)
        assert s.rev_payable == D("100.00") and s.payable == D("100.00")
        assert s.carryover_out == (D("-500.00") if terms.negative_carryover else D("0.00"))
    clawed = settle(MonthFigures(cpa_validated=D("50.00"), rev=D("40.00"), rev_adjustments=D("-300.00"),
                                 rev_settlements=D("-100.00")), Carry(), OFF)
    assert clawed.rev_payable == D("-60.00") and clawed.payable == D("-10.00")
    assert clawed.on_hold and clawed.held_out == D("-10.00")


NOV, DEC = date(2025, 11, 1), date(2025, 12, 1)


def test_the_issues_example_november_settled_again() -> None:
    """November closed with a REV balance of +65 and paid 65; a late bet adds +100 to it while
    December's own REV is -300 (minimum payout 0, carryover on). November settled again pays
    165: December pays the 100 and carries its own -300, not -200."""
    november = settle_rev(NOV, True, D("0.00"), D("65.00"))
    assert (november.rev_paid, november.carryover_out) == (D("65.00"), D("0.00"))
    changed, carried = resettle(D("0.00"), [(november, D("100.00"))])
    assert [(c.after.month, c.before.rev_paid, c.after.rev_paid, c.amount) for c in changed] == [
        (NOV, D("65.00"), D("165.00"), D("100.00"))]
    december = settle(MonthFigures(rev=D("-300.00"), rev_adjustments=D("100.00"), rev_settlements=D("100.00")),
                      Carry(carried), PayoutTerms(1, 1, True, D("0.00")))
    assert (december.rev_payable, december.payable, december.carryover_out) == (
        D("100.00"), D("100.00"), D("-300.00"))
    assert changed[0].describe() == (
        "2025-11 settled again: REV balance 65.00 -> 165.00 (carried in 0.00, REV 165.00), negative carryover "
        "on: paid 65.00, now 165.00, pays 100.00; carries 0.00 (was 0.00)")


def test_a_chain_settled_again_by_each_months_rule() -> None:
    """September (on) carried -100 into October (+150: paid 50), November (off) paid its 30.
    September loses 100 more: it carries -200, October now carries -50 and pays nothing (-50),
    November is off: it takes no carry and keeps its 30; December starts from nothing carried.
    Months whose settlement did not change are not listed."""
    sep = settle_rev(date(2025, 9, 1), True, D("0.00"), D("-100.00"))
    oct_ = settle_rev(date(2025, 10, 1), True, sep.carryover_out, D("150.00"))
    nov = settle_rev(NOV, False, oct_.carryover_out, D("30.00"))
    changed, carried = resettle(D("0.00"), [(sep, D("-100.00")), (oct_, D("0.00")), (nov, D("0.00"))])
    assert [(c.after.month.month, c.amount, c.after.carryover_out) for c in changed] == [
        (9, D("0.00"), D("-200.00")), (10, D("-50.00"), D("-50.00"))]
    assert carried == D("0.00")
    # the same chain with November on: it takes the -50 in and pays 30 less
    nov_on = settle_rev(NOV, True, oct_.carryover_out, D("30.00"))
    changed, carried = resettle(D("0.00"), [(sep, D("-100.00")), (oct_, D("0.00")), (nov_on, D("0.00"))])
    assert [c.amount for c in changed] == [D("0.00"), D("-50.00"), D("-30.00")] and carried == D("-20.00")
