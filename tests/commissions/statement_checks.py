"""What every statement must satisfy, read through GraphQL: its lines add up to its figures,
and its figures to its payable (docs/payouts.md)."""

from __future__ import annotations

from decimal import Decimal as D
from typing import Any

from tests.support.program import Program

FIGURES = """id status negativeCarryover minPayout cpaValidated cpaRejected cpa rev cpaAdjustments revAdjustments
  revSettlements carryoverIn revPayable carryoverOut heldIn payable heldOut belowMinPayout
  lines { kind amount amountPaid level day validationId referredUserId correctsMonth description }"""
STATEMENT = f"query S($id: ID!) {{ statement(id: $id) {{ {FIGURES} }} }}"
MONTH = f"query M($m: Date!) {{ statements(month: $m, first: 20) {{ {FIGURES} }} }}"
CLOSE = "mutation C($m: Date!) { closeMonth(month: $m) { months } }"
ZERO = D("0.00")


def total(s: dict[str, Any], kind: str) -> D:
    return sum((D(line["amount"]) for line in s["lines"] if line["kind"] == kind), ZERO)


def assert_adds_up(s: dict[str, Any]) -> None:
    """The lines give the figures; the figures give the payable; the rules give the carry."""
    assert D(s["cpa"]) == total(s, "CPA") == D(s["cpaValidated"]) - D(s["cpaRejected"]), s["id"]
    assert total(s, "CPA_REJECTED") == 0, s["id"]
    assert D(s["cpaAdjustments"]) == total(s, "CPA_ADJUSTMENT"), s["id"]
    assert D(s["rev"]) == total(s, "REV"), s["id"]
    assert D(s["revAdjustments"]) == total(s, "REV_ADJUSTMENT"), s["id"]
    assert D(s["revSettlements"]) == total(s, "REV_SETTLEMENT"), s["id"]
    for line in s["lines"]:
        settles = line["kind"] == "REV_SETTLEMENT"
        assert line["amountPaid"] == (line["amount"] if settles else None), (s["id"], line)
        assert (line["level"] is None) == settles, (s["id"], line)
    carried = D(s["carryoverIn"])
    if not s["negativeCarryover"]:
        assert carried == 0, s["id"]
    balance = carried + D(s["rev"])
    assert D(s["revPayable"]) == max(balance, ZERO) + D(s["revSettlements"]), s["id"]
    assert D(s["carryoverOut"]) == (min(balance, ZERO) if s["negativeCarryover"] else ZERO), s["id"]
    payable = D(s["cpa"]) + D(s["cpaAdjustments"]) + D(s["revPayable"]) + D(s["heldIn"])
    assert D(s["payable"]) == payable, s["id"]
    held = payable < D(s["minPayout"]) or payable <= 0
    assert s["belowMinPayout"] == held, s["id"]
    assert D(s["heldOut"]) == (payable if held else ZERO), s["id"]
    if s["status"] != "OPEN":
        assert (s["status"] == "ON_HOLD") == held, s["id"]


async def statement(program: Program, id: str) -> dict[str, Any]:
    """A statement, checked to add up."""
    found = (await program.data(STATEMENT, {"id": id}))["statement"]
    if found is not None:
        assert_adds_up(found)
    return found


async def month_statements(program: Program, month: str) -> list[dict[str, Any]]:
    """Every statement of a month, each checked to add up."""
    found = (await program.data(MONTH, {"m": month}))["statements"]
    for s in found:
        assert_adds_up(s)
    return found


async def close(program: Program, month: str) -> None:
    await program.data(CLOSE, {"m": month})


def settlements(s: dict[str, Any]) -> list[tuple[str, str]]:
    """The REV settlement lines: (month settled again, what it pays)."""
    return [(line["correctsMonth"], line["amount"]) for line in s["lines"] if line["kind"] == "REV_SETTLEMENT"]


def settlement_text(s: dict[str, Any], month: str) -> str:
    [text] = [line["description"] for line in s["lines"]
              if line["kind"] == "REV_SETTLEMENT" and line["correctsMonth"] == month]
    return text


def rev_adjustments(s: dict[str, Any]) -> list[tuple[str, str]]:
    """The raw REV adjustment lines: (day, change)."""
    return [(line["day"], line["amount"]) for line in s["lines"] if line["kind"] == "REV_ADJUSTMENT"]
