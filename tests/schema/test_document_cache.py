"""Parsing, validation and the cost estimate are cached per document (schema/documents.py, schema/cost.py), and
a cached answer is always the one a fresh computation gives."""

from __future__ import annotations

from typing import Any

import pytest
from graphql import parse, specified_rules
from strawberry.schema.schema import validate_document

from schema import cost as cost_tables
from schema import documents
from schema.cost import cached_document_cost, document_cost
from schema.documents import parsed_document, validate
from schema.limits import limit_rules
from schema.root import schema

PAGED_TEXT = """query($n: Int, $m: Int = 7, $id: ID!) { affiliate(id: $id) {
  referrals(first: $n) { nodes { referredAffiliate { transactions(first: $m) { nodes { amount } } } } } } }"""
PAGED = parse(PAGED_TEXT)
RULES = (*specified_rules, *limit_rules(10, 30, False))


@pytest.mark.parametrize("variables", [
    {"n": 3, "m": 2, "id": "1"},
    {"n": 3, "m": 2, "id": "2"},  # another id: the same cost
    {"n": 100, "m": 100, "id": "1"},
    {"n": 1, "m": 1, "id": "1"},
    {"n": 1.0, "m": True, "id": "1"},  # equal to 1 as keys, not as page sizes
    {"n": None, "id": "1"},
    {"n": None, "m": None, "id": "1"},  # a null is not the variable's default
    {"id": "1"},  # not sent: the defaults
    {"n": [1, 2], "id": "1"},  # not a valid Int, and not hashable
])
def test_cached_cost_equals_a_fresh_one(variables: dict[str, Any]) -> None:
    entry = parsed_document(PAGED_TEXT, 2000)
    for _ in range(2):  # the second time from the cache
        cached = cached_document_cost(schema._schema, entry, None, variables)
        assert cached == document_cost(schema._schema, PAGED.definitions, None, variables)


def test_a_cost_does_not_depend_on_other_variables() -> None:
    entry = parsed_document(PAGED_TEXT, 2000)
    costs = {cached_document_cost(schema._schema, entry, None, {"n": 5, "m": 5, "id": str(i)}) for i in range(50)}
    assert len(costs) == 1 and len(entry.costs) <= documents.MAX_COSTS_PER_DOCUMENT


def test_the_page_size_setting_is_part_of_the_cost() -> None:
    entry = parsed_document(PAGED_TEXT, 2000)
    small = cached_document_cost(schema._schema, entry, None, {"n": 500, "id": "1"}, max_page=10)
    large = cached_document_cost(schema._schema, entry, None, {"n": 500, "id": "1"}, max_page=100)
    assert small == document_cost(schema._schema, PAGED.definitions, None, {"n": 500, "id": "1"}, 10) < large


def test_a_valid_document_is_parsed_and_validated_once() -> None:
    query = '{ affiliate(id: "1") { id name } }'
    entry = parsed_document(query, 2000)
    assert parsed_document(query, 2000) is entry and entry.key in documents.DOCUMENTS
    assert validate(schema._schema, entry, RULES) == [] == validate_document(schema._schema, entry.document, RULES)
    assert (schema._schema, RULES) in entry.passed
    assert validate(schema._schema, entry, RULES) == []
    assert parsed_document(query, 2000) is entry  # still held


def test_a_document_failing_validation_is_not_kept() -> None:
    query = '{ affiliate(id: "1") { id nope } }'
    entry = parsed_document(query, 2000)
    first = validate(schema._schema, entry, RULES)
    assert [e.message for e in first] == [e.message for e in validate_document(schema._schema, entry.document, RULES)]
    assert any("nope" in e.message for e in first)
    assert entry.key not in documents.DOCUMENTS  # let go: the next request parses it again
    again = parsed_document(query, 2000)
    assert again is not entry
    assert [e.message for e in validate(schema._schema, again, RULES)] == [e.message for e in first]


def test_a_document_valid_for_one_role_stays_when_another_fails() -> None:
    query = "{ __schema { queryType { name } } }"
    entry = parsed_document(query, 2000)
    admin = (*specified_rules, *limit_rules(10, 30, True))
    assert validate(schema._schema, entry, admin) == []
    errors = validate(schema._schema, entry, RULES)  # no introspection for affiliates
    assert errors and entry.key in documents.DOCUMENTS and parsed_document(query, 2000) is entry


def test_a_document_that_does_not_parse_is_not_kept() -> None:
    held = documents.DOCUMENTS.held_bytes, len(documents.DOCUMENTS)
    for i in range(20):
        with pytest.raises(Exception, match="Syntax Error"):
            parsed_document(f"{{ affiliate(id: {i}) {{ id ", 2000)
    assert (documents.DOCUMENTS.held_bytes, len(documents.DOCUMENTS)) == held


def test_the_token_limit_is_part_of_the_key() -> None:
    query = "{ " + "__typename " * 60 + "}"
    assert parsed_document(query, 2000).document is not None
    with pytest.raises(Exception, match="more than 50 tokens"):
        parsed_document(query, 50)


LEVELS_TWICE = parse("""{ affiliate(id: "1") { network { levels { level } }
  summaries(period: DAILY, last: 2) { levels { level } } } }""")


def cost(document: Any, variables: dict[str, Any] | None = None) -> int:
    return document_cost(schema._schema, document.definitions, None, variables or {})


def test_costs_are_keyed_by_type_and_field(monkeypatch: pytest.MonkeyPatch) -> None:
    # affiliate 1 + network 1 + 5 levels x (1 + level 1) + summaries 1 + 2 x (1 + 5 x 2)
    assert cost(LEVELS_TWICE) == 1 + 1 + 1 + 5 * 1 + 1 + 2 * (1 + 5 * 1)
    # Two types' fields of one name are sized apart: Network.levels changes, PeriodicSummary's does not.
    monkeypatch.setitem(cost_tables.FIXED_LIST_SIZES, ("Network", "levels"), 7)
    assert cost(LEVELS_TWICE) == 1 + 1 + 1 + 7 * 1 + 1 + 2 * (1 + 5 * 1)


@pytest.mark.parametrize(("document", "expected"), [
    # A paged list without `first` counts the field's default page (20).
    ("{ affiliates { nodes { id } } }", 1 + 20 * (1 + 1)),
    ("{ ranking(first: 3) { nodes { id } } }", 1 + 3 * (1 + 1)),
    # Fragments and inline fragments are sized by their type condition.
    ("{ affiliate(id: \"1\") { ...F } } fragment F on Affiliate { upline { id } }", 1 + 1 + 5 * 1),
    ("{ affiliate(id: \"1\") { ... on Affiliate { upline { id } } } }", 1 + 1 + 5 * 1),
    # The audit log: `first` up to 500, 50 without it (its default).
    ("{ commissionAuditLog(first: 7) { id } }", 1 + 7 * 1),
    ("{ commissionAuditLog { id } }", 1 + 50 * 1),
    ("{ commissionAuditLog(first: 9999) { id } }", 1 + 500 * 1),
    ("{ syncStatus { runsInProgress { id } } }", 1 + 1 + 1 * 1),
])
def test_the_cost_of_documents(document: str, expected: int) -> None:
    assert cost(parse(document)) == expected
