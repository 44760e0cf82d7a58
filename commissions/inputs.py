"""What callers give the commissions domain (plan terms, qualification criteria) and the checks
every input passes. A refusal is ``InvalidCommissionInput`` naming the field as the API spells
it (``terms.revShareByLevel[3]``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from commissions.errors import InvalidCommissionInput
from commissions.months import local_today

MAX_MONEY = Decimal("999999999999.99")  # numeric(14,2)
ONE = Decimal(1)
LEVEL_COUNT = 5


@dataclass(frozen=True)
class PlanTerms:
    """What a plan version pays: a CPA amount and a REV share for each level 1..5."""

    cpa_by_level: Sequence[Decimal]
    rev_share_by_level: Sequence[Decimal]
    negative_carryover: bool
    min_payout: Decimal


@dataclass(frozen=True)
class QualificationTerms:
    """What a referred user must reach for a CPA validation (``window_days``: None, no window)."""

    min_deposits: Decimal
    min_stake: Decimal
    min_active_days: int
    window_days: int | None


def _places(value: Decimal) -> int:
    exponent = value.as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def check_money(value: Decimal, name: str) -> Decimal:
    if not value.is_finite():
        raise InvalidCommissionInput(f"{name} must be a number, got {value}")
    if value < 0:
        raise InvalidCommissionInput(f"{name} must be >= 0, got {value}")
    if value > MAX_MONEY or _places(value) > 2:
        raise InvalidCommissionInput(
            f"{name} must be an amount with at most 2 decimal places up to {MAX_MONEY}, got {value}")
    return value.quantize(Decimal("0.01"))


def check_share(value: Decimal, name: str) -> Decimal:
    if not value.is_finite() or not 0 <= value <= ONE:
        raise InvalidCommissionInput(f"{name} must be between 0 and 1, got {value}")
    if _places(value) > 6:
        raise InvalidCommissionInput(f"{name} must have at most 6 decimal places, got {value}")
    return value


def check_terms(terms: PlanTerms, name: str = "terms") -> PlanTerms:
    """The terms with amounts to the cent, or the refusal naming the field."""
    for field, values in (("cpaByLevel", terms.cpa_by_level), ("revShareByLevel", terms.rev_share_by_level)):
        if len(values) != LEVEL_COUNT:
            raise InvalidCommissionInput(
                f"{name}.{field} must have exactly five levels (1-5), got {len(values)}")
    cpa = [check_money(amount, f"{name}.cpaByLevel[{i}]") for i, amount in enumerate(terms.cpa_by_level, 1)]
    shares = [check_share(share, f"{name}.revShareByLevel[{i}]")
              for i, share in enumerate(terms.rev_share_by_level, 1)]
    min_payout = check_money(terms.min_payout, f"{name}.minPayout")
    return PlanTerms(cpa, shares, terms.negative_carryover, min_payout)


def check_qualification(criteria: QualificationTerms, name: str = "criteria") -> QualificationTerms:
    """The criteria with amounts to the cent, or the refusal naming the field."""
    deposits = check_money(criteria.min_deposits, f"{name}.minDeposits")
    stake = check_money(criteria.min_stake, f"{name}.minStake")
    if not 0 <= criteria.min_active_days <= 366:
        raise InvalidCommissionInput(
            f"{name}.minActiveDays must be between 0 and 366, got {criteria.min_active_days}")
    if criteria.window_days is not None and not 1 <= criteria.window_days <= 3660:
        raise InvalidCommissionInput(
            f"{name}.windowDays must be between 1 and 3660 (or null), got {criteria.window_days}")
    return QualificationTerms(deposits, stake, criteria.min_active_days, criteria.window_days)


def check_not_retroactive(tz: str, effective_from: date, name: str = "effectiveFrom") -> date:
    """Terms take effect from the start of a local day, tomorrow at the earliest: a day is priced
    by the terms in force when it began, so nothing committed today changes today or the past."""
    today = local_today(tz)
    if effective_from <= today:
        tomorrow = today + timedelta(days=1)
        raise InvalidCommissionInput(
            f"{name} must be tomorrow ({tomorrow.isoformat()}) or later: terms take effect from the "
            f"start of a local day after the change (today is {today.isoformat()} in {tz}), "
            f"got {effective_from.isoformat()}")
    return effective_from


def next_local_day(tz: str) -> date:
    """The first day a change made now can take effect: tomorrow (local business date)."""
    return local_today(tz) + timedelta(days=1)
