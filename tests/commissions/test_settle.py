"""The arithmetic of a month, over sequences of months (docs/payouts.md)."""

from __future__ import annotations

from decimal import Decimal as D

from commissions.payout import Carry, MonthFigures, PayoutTerms, settle

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
    figures = MonthFigures(cpa_validated=D("400.00"), cpa_rejected=D("50.00"), rev=D("10.00"),
                           cpa_adjustments=D("-20.00"), rev_adjustments=D("-15.00"))
    s = settle(figures, Carry(D("-5.00"), D("0.00")), ON)
    assert s.cpa == D("350.00")
    assert s.rev_payable == D("0.00") and s.carryover_out == D("-10.00")
    assert s.payable == D("330.00") and not s.on_hold


def test_a_negative_payable_is_held_and_offsets_the_next_month() -> None:
    s = settle(MonthFigures(cpa_adjustments=D("-50.00")), Carry(), PayoutTerms(1, 1, True, D("0.00")))
    assert s.on_hold and s.held_out == D("-50.00")
    nxt = settle(MonthFigures(cpa_validated=D("70.00")), s.carry, PayoutTerms(1, 1, True, D("0.00")))
    assert nxt.payable == D("20.00") and not nxt.on_hold


def test_corrections_of_months_with_carryover_off_are_paid_as_they_change_those_months() -> None:
    """A closed month settled with carryover off: its correction pays the change in
    max(0, its REV), added as is: not floored by this month's own REV, negative or not."""
    paid = MonthFigures(rev=D("-500.00"), rev_adjustments=D("300.00"), rev_adjustments_off=D("300.00"),
                        rev_adjustments_off_paid=D("100.00"))
    for terms in (OFF, ON):
        s = settle(paid, Carry(), terms)
        assert s.rev_payable == D("100.00") and s.payable == D("100.00")
        assert s.carryover_out == (D("-500.00") if terms.negative_carryover else D("0.00"))
    clawed = settle(MonthFigures(cpa_validated=D("50.00"), rev=D("40.00"), rev_adjustments=D("-300.00"),
                                 rev_adjustments_off=D("-300.00"), rev_adjustments_off_paid=D("-100.00")),
                    Carry(), OFF)
    assert clawed.rev_payable == D("-60.00") and clawed.payable == D("-10.00")
    assert clawed.on_hold and clawed.held_out == D("-10.00")


def test_corrections_of_months_with_carryover_on_join_the_balance() -> None:
    """Corrections of months settled with carryover on keep joining the running balance; in a
    month that has both kinds, only those of carryover-off months are paid as they are."""
    s = settle(MonthFigures(rev=D("50.00"), rev_adjustments=D("-80.00"), rev_adjustments_off=D("20.00"),
                            rev_adjustments_off_paid=D("20.00")), Carry(D("-10.00")), ON)
    # balance -10 + 50 + (-80 - 20) = -60: carried; the carryover-off month pays its 20
    assert s.carryover_out == D("-60.00") and s.rev_payable == D("20.00") and s.payable == D("20.00")
