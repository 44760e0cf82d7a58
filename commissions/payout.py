"""The arithmetic of one affiliate's month: what it is paid, what it carries to the next.

Pure: no database, no dates. Open statements and closing ones settle with the same
``settle``; docs/payouts.md says the rules in plain words.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

ZERO = Decimal("0.00")


@dataclass(frozen=True)
class PayoutTerms:
    """The parts of a plan version that settle a month (the version in force on its last day)."""

    plan_id: int
    plan_version_id: int
    negative_carryover: bool
    min_payout: Decimal


@dataclass(frozen=True)
class MonthFigures:
    cpa_validated: Decimal = ZERO  # every validation dated in the month (= the summaries' cpa)
    cpa_rejected: Decimal = ZERO  # of which rejected: not paid
    rev: Decimal = ZERO  # the month's daily REV accruals (= the summaries' rev)
    cpa_adjustments: Decimal = ZERO
    rev_adjustments: Decimal = ZERO  # REV corrections of closed months as they changed them
    # Of which, corrections of months settled with negative carryover off: their change, and
    # what they pay (per month, max(0, its REV now) - max(0, its REV as settled before)).
    rev_adjustments_off: Decimal = ZERO
    rev_adjustments_off_paid: Decimal = ZERO


@dataclass(frozen=True)
class Carry:
    """What a month hands to the next: the negative REV balance and the held payable."""

    carryover: Decimal = ZERO
    held: Decimal = ZERO


@dataclass(frozen=True)
class Settlement:
    figures: MonthFigures
    terms: PayoutTerms
    cpa: Decimal
    carryover_in: Decimal
    rev_payable: Decimal
    carryover_out: Decimal
    held_in: Decimal
    payable: Decimal
    held_out: Decimal
    on_hold: bool

    @property
    def carry(self) -> Carry:
        return Carry(self.carryover_out, self.held_out)


def settle(figures: MonthFigures, carry_in: Carry, terms: PayoutTerms) -> Settlement:
    """One month of one affiliate.

    REV balance = carried negative balance (only with negative carryover on) + the month's
    REV + the corrections of closed months settled with carryover on. A negative balance pays
    nothing and is carried (on) or forgotten (off: a negative month counts as zero). A
    correction belongs to the month it corrects: for a month settled with carryover off it
    pays what it changes in that month's max(0, REV), added as is (never floored by this
    month's REV). REV paid = max(balance, 0) + those. Payable = CPA (rejected excluded) + CPA
    adjustments + the REV paid + what the previous month held. Below the minimum payout (or
    not positive) the statement is on hold and the whole payable rolls into the next month.
    """
    cpa = figures.cpa_validated - figures.cpa_rejected
    carryover_in = carry_in.carryover if terms.negative_carryover else ZERO
    balance = carryover_in + figures.rev + figures.rev_adjustments - figures.rev_adjustments_off
    rev_payable = max(balance, ZERO) + figures.rev_adjustments_off_paid
    carryover_out = min(balance, ZERO) if terms.negative_carryover else ZERO
    payable = cpa + figures.cpa_adjustments + rev_payable + carry_in.held
    on_hold = payable < terms.min_payout or payable <= ZERO
    return Settlement(
        figures=figures,
        terms=terms,
        cpa=cpa,
        carryover_in=carryover_in,
        rev_payable=rev_payable,
        carryover_out=carryover_out,
        held_in=carry_in.held,
        payable=payable,
        held_out=payable if on_hold else ZERO,
        on_hold=on_hold,
    )
