"""Parsing, validation and the cost estimate are cached per document (schema/limits.py), and
a cached answer is always the one a fresh computation gives."""

from __future__ import annotations

from typing import Any

import pytest
from graphql import parse, specified_rules
from strawberry.schema.schema import validate_document

from schema.limits import _parse, _validate, cached_document_cost, document_cost, limit_rules
from schema.root import schema

PAGED = parse("""query($n: Int, $m: Int, $id: ID!) { affiliate(id: $id) {
  referrals(first: $n) { nodes { referredAffiliate { transactions(first: $m) { nodes { amount } } } } } } }""")


@pytest.mark.parametrize("variables", [
    {"n": 3, "m": 2, "id": "1"},
    {"n": 3, "m": 2, "id": "2"},  # another id: the same cost
    {"n": 100, "m": 100, "id": "1"},
    {"n": 1, "m": 1, "id": "1"},
    {"n": 1.0, "m": True, "id": "1"},  # equal to 1 as keys, not as page sizes
    {"n": None, "id": "1"},
    {"n": [1, 2], "id": "1"},  # not a valid Int, and not hashable
])
def test_cached_cost_equals_a_fresh_one(variables: dict[str, Any]) -> None:
    for _ in range(2):  # the second time from the cache
        cached = cached_document_cost(schema._schema, PAGED, None, variables)
        assert cached == document_cost(schema._schema, PAGED.definitions, None, variables)


def test_a_cost_does_not_depend_on_other_variables() -> None:
    costs = {cached_document_cost(schema._schema, PAGED, None, {"n": 5, "m": 5, "id": str(i)}) for i in range(50)}
    assert len(costs) == 1


def test_parse_and_validation_are_reused_and_equal_fresh_ones() -> None:
    query = '{ affiliate(id: "1") { id nope } }'
    document = _parse(query, max_tokens=2000)
    assert _parse(query, max_tokens=2000) is document
    rules = (*specified_rules, *limit_rules(10, 30, False))
    first = _validate(schema._schema, document, rules)
    assert _validate(schema._schema, document, rules) is first
    assert [e.message for e in first] == [e.message for e in validate_document(schema._schema, document, rules)]
    assert any("nope" in e.message for e in first)


LEVELS_TWICE = parse("""{ affiliate(id: "1") { network { levels { level } }
  summaries(period: DAILY, last: 2) { levels { level } } } }""")


def cost(document: Any, variables: dict[str, Any] | None = None) -> int:
    return document_cost(schema._schema, document.definitions, None, variables or {})


def test_costs_are_keyed_by_type_and_field(monkeypatch: pytest.MonkeyPatch) -> None:
    # affiliate 1 + network 1 + 5 levels x (1 + level 1) + summaries 1 + 2 x (1 + 5 x 2)
    assert cost(LEVELS_TWICE) == 1 + 1 + 1 + 5 * 1 + 1 + 2 * (1 + 5 * 1)
    from schema import limits

    # Two types' fields of one name are sized apart: Network.levels changes, PeriodicSummary's does not.
    monkeypatch.setitem(limits.FIXED_LIST_SIZES, ("Network", "levels"), 7)
    assert cost(LEVELS_TWICE) == 1 + 1 + 1 + 7 * 1 + 1 + 2 * (1 + 5 * 1)


@pytest.mark.parametrize(("document", "expected"), [
    # A paged list without `first` counts its default page of 20.
    ("{ affiliates { nodes { id } } }", 1 + 20 * (1 + 1)),
    ("{ ranking(first: 3) { nodes { id } } }", 1 + 3 * (1 + 1)),
    # Fragments and inline fragments are sized by their type condition.
    ("{ affiliate(id: \"1\") { ...F } } fragment F on Affiliate { upline { id } }", 1 + 1 + 5 * 1),
    ("{ affiliate(id: \"1\") { ... on Affiliate { upline { id } } } }", 1 + 1 + 5 * 1),
    # A field with a `first` argument given is a page even when not listed (the audit log).
    ("{ commissionAuditLog(first: 7) { id } }", 1 + 7 * 1),
    ("{ commissionAuditLog { id } }", 1 + 1),
    ("{ syncStatus { runsInProgress { id } } }", 1 + 1 + 1 * 1),
])
def test_the_cost_of_documents(document: str, expected: int) -> None:
    assert cost(parse(document)) == expected
