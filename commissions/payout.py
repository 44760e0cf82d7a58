"""The arithmetic of one affiliate's month: what it is paid, what it carries to the next; and
the settling again of closed months whose REV changed after they closed.

Pure: no database, no dates beyond naming months. Open statements and closing ones settle with
the same ``settle`` and ``resettle``; docs/payouts.md says the rules in plain words.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
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
    rev_adjustments: Decimal = ZERO  # REV corrections of closed months as they changed them (raw)
    # What the closed months settled again with those corrections pay now (``resettle``): the
    # sum of their REV settlement lines, negative when they take back REV paid before.
    rev_settlements: Decimal = ZERO


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

    The month's own REV balance = the negative balance carried in (only with negative
    carryover on) + the month's REV. A negative balance pays nothing and is carried (on) or
    forgotten (off: a negative month counts as zero). Corrections of closed months are not
    part of it: they belong to the months they correct, which are settled again
    (``resettle``), and what that changes is paid as it is (``rev_settlements``), never floored
    by this month's REV. REV paid = max(balance, 0) + rev_settlements. Payable = CPA (rejected
    excluded) + CPA adjustments + the REV paid + what the previous month held. Below the
    minimum payout (or not positive) the statement is on hold and the whole payable rolls into
    the next month.
    """
    cpa = figures.cpa_validated - figures.cpa_rejected
    carryover_in, own_rev_paid, carryover_out = _rev_balance(
        terms.negative_carryover, carry_in.carryover, figures.rev)
    rev_payable = own_rev_paid + figures.rev_settlements
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


@dataclass(frozen=True)
class RevState:
    """How a closed month's own REV is settled: by the carryover rule in force on its last day,
    from the balance carried in and its REV. ``rev_paid`` is what it has been paid for it."""

    month: date
    negative_carryover: bool
    carryover_in: Decimal
    rev: Decimal
    rev_paid: Decimal
    carryover_out: Decimal

    @property
    def balance(self) -> Decimal:
        return self.carryover_in + self.rev


def settle_rev(month: date, negative_carryover: bool, carried: Decimal, rev: Decimal) -> RevState:
    """A month's REV settled: balance = carried (on) + rev; pays max(0, balance); carries
    min(0, balance) when on, nothing when off."""
    carryover_in, rev_paid, carryover_out = _rev_balance(negative_carryover, carried, rev)
    return RevState(month, negative_carryover, carryover_in, rev, rev_paid, carryover_out)


def _rev_balance(
    negative_carryover: bool, carried: Decimal, rev: Decimal
) -> tuple[Decimal, Decimal, Decimal]:
    """A month's own REV balance = what it takes in (carried, only when on) + its REV:
    (carried in, REV paid = max(0, balance), carried out = min(0, balance) when on, else 0)."""
    carryover_in = carried if negative_carryover else ZERO
    balance = carryover_in + rev
    return carryover_in, max(balance, ZERO), min(balance, ZERO) if negative_carryover else ZERO


@dataclass(frozen=True)
class RevSettlement:
    """A closed month settled again: as it stood (``before``: as closed, or as last settled
    again) and now (``after``); the open month pays the difference in what it paid."""

    before: RevState
    after: RevState

    @property
    def amount(self) -> Decimal:
        return self.after.rev_paid - self.before.rev_paid

    def describe(self) -> str:
        b, a = self.before, self.after
        rule = "on" if a.negative_carryover else "off"
        return (f"{a.month:%Y-%m} settled again: REV balance {_money(b.balance)} -> {_money(a.balance)} "
                f"(carried in {_money(a.carryover_in)}, REV {_money(a.rev)}), negative carryover {rule}: "
                f"paid {_money(b.rev_paid)}, now {_money(a.rev_paid)}, pays {_money(self.amount)}; "
                f"carries {_money(a.carryover_out)} (was {_money(b.carryover_out)})")


def _money(value: Decimal) -> str:
    return f"{value + ZERO:.2f}"  # + 0.00: never "-0.00"


def resettle(
    carried: Decimal, months: Sequence[tuple[RevState, Decimal]]
) -> tuple[tuple[RevSettlement, ...], Decimal]:
    """Closed months settled again in order with their corrected REV.

    ``months``: each closed month from the earliest whose REV changed to the last closed one,
    as it stands (``RevState``) with the change of its REV not yet settled; ``carried``: what
    the month before the first carried out. Each month is settled by its own rule from what the
    month before it, settled again, carries out. Returns the months whose settlement changed
    (in order) and what the last one carries out now: the next month's carried-in balance.
    """
    changed = []
    for current, change in months:
        after = settle_rev(current.month, current.negative_carryover, carried, current.rev + change)
        if after != current:
            changed.append(RevSettlement(current, after))
        carried = after.carryover_out
    return tuple(changed), carried
