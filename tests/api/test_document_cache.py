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
        assert cached_document_cost(PAGED, None, variables) == document_cost(PAGED.definitions, None, variables)


def test_a_cost_does_not_depend_on_other_variables() -> None:
    costs = {cached_document_cost(PAGED, None, {"n": 5, "m": 5, "id": str(i)}) for i in range(50)}
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
