"""The cost estimate cannot be dodged: a page size left to a variable's default, to the
field's default or to nothing counts what the server will really return (issue 13), and
every list field of the schema has a largest size."""

from __future__ import annotations

from typing import Any

import pytest
from graphql import GraphQLObjectType, get_introspection_query, parse

from schema import cost as cost_tables
from schema.cost import document_cost, is_list_of_objects
from schema.root import schema
from tests.support.clients import AFFILIATE, Clients

# The audit's documents: nested pages whose size only a variable's default states.
AFFILIATE_BOMB = """query Q($n: Int = 100) { affiliates(first: $n) { nodes { referrals(first: $n) { nodes {
  referredAffiliate { referrals(first: $n) { nodes { level } } } } } } } }"""
ADMIN_BOMB = """query Q($n: Int = 100) { affiliates(first: $n) { nodes { referrals(first: $n) { nodes {
  referredAffiliate { transactions(first: $n) { nodes { amount } } } } } } } }"""


def cost(document: str, variables: dict[str, Any] | None = None, max_page: int = 100) -> int:
    return document_cost(schema._schema, parse(document).definitions, None, variables or {}, max_page)


@pytest.mark.parametrize("document", [AFFILIATE_BOMB, ADMIN_BOMB])
def test_a_variables_default_counts_as_if_it_were_sent(document: str) -> None:
    assert cost(document) == cost(document, {"n": 100}) == 2_030_201
    literal = document.replace("query Q($n: Int = 100)", "").replace("$n", "100")
    assert cost(literal) == 2_030_201


def test_a_variable_without_default_or_value_counts_the_fields_default() -> None:
    document = ADMIN_BOMB.replace("$n: Int = 100", "$n: Int")
    # The resolvers page 20 when `first` is absent (the schema's default argument).
    assert cost(document) == cost(document, {"n": 20}) == cost(document.replace("(first: $n)", ""))
    assert cost(document, {"n": None}) == cost(document, {"n": 20})  # a null: the resolver's default


@pytest.mark.parametrize(("document", "variables", "size"), [
    ("{ affiliates(first: 5000) { nodes { id } } }", None, 100),  # above the largest: the largest
    ("query($n: Int) { affiliates(first: $n) { nodes { id } } }", {"n": 5000}, 100),
    ("query($n: Int = 5000) { affiliates(first: $n) { nodes { id } } }", None, 100),
    ("query($n: Int = 3) { affiliates(first: $n) { nodes { id } } }", None, 3),
    ("query($n: Int = 3) { affiliates(first: $n) { nodes { id } } }", {"n": 4}, 4),
    ("query($n: Int = null) { affiliates(first: $n) { nodes { id } } }", None, 20),
    ("query($n: Int) { affiliates(first: $n) { nodes { id } } }", {"n": "x"}, 100),  # not an Int: the largest
    ("query($n: Int) { affiliates(first: $n) { nodes { id } } }", {"n": True}, 100),
    ("{ affiliates(first: 0) { nodes { id } } }", None, 1),
])
def test_page_sizes(document: str, variables: dict[str, Any] | None, size: int) -> None:
    assert cost(document, variables) == 1 + size * (1 + 1)


@pytest.mark.parametrize(("arguments", "size"), [
    ("period: DAILY", 1000),  # daily over the whole history: the largest
    ("period: WEEKLY", 144),  # the weeks of 1000 days
    ("period: MONTHLY", 34),
    ("period: YEARLY", 4),
    ("period: MONTHLY, last: 30", 30),
    ("period: DAILY, last: 5000", 1000),
])
def test_summaries(arguments: str, size: int) -> None:
    document = f'{{ affiliate(id: "1") {{ summaries({arguments}) {{ cpaEarned }} }} }}'
    assert cost(document) == 1 + 1 + size * 1
    variable = 'query($l: Int = 30) { affiliate(id: "1") { summaries(period: DAILY, last: $l) { cpaEarned } } }'
    assert cost(variable) == 1 + 1 + 30 and cost(variable, {"l": None}) == 1 + 1 + 1000
    period = 'query($p: PeriodType!) { affiliate(id: "1") { summaries(period: $p) { cpaEarned } } }'
    assert cost(period, {"p": "MONTHLY"}) == 1 + 1 + 34 and cost(period) == cost(period, {"p": ["x"]}) == 1 + 1 + 1000
    default = 'query($p: PeriodType = WEEKLY) { affiliate(id: "1") { summaries(period: $p) { cpaEarned } } }'
    assert cost(default) == 1 + 1 + 144


def test_introspection_counts_its_lists_once() -> None:
    """Introspection is bounded by the schema (and off for affiliates): its lists count 1, so a
    client's schema fetch (gql, GraphiQL) stays far under the budget."""
    assert cost(get_introspection_query(descriptions=True)) < 1000


def test_the_page_size_setting_bounds_the_pages() -> None:
    assert cost("{ affiliates(first: 100) { nodes { id } } }", max_page=10) == 1 + 10 * 2
    # Fields with their own bounds keep them.
    assert cost("{ commissionAuditLog(first: 400) { id } }", max_page=10) == 1 + 400


def test_the_simulation_is_one_page() -> None:
    document = """{ simulateCommissionPlan(terms: {cpaByLevel: []}, month: "2025-01-01") {
      month affiliates { affiliateId } } }"""
    assert cost(document) == 1 + 100 * (1 + 1 + 1 * 1)  # `first` defaults to 100
    assert cost(document.replace("month: \"2025-01-01\"", "month: \"2025-01-01\", first: 1000")) == 1 + 1000 * 3


def test_every_list_field_has_a_largest_size() -> None:
    """Walk the schema: a field returning a list of objects is sized by the tables (a field
    returning a list of scalars costs 1 whatever its length)."""
    missing, checked = [], 0
    for type_ in schema._schema.type_map.values():
        if not isinstance(type_, GraphQLObjectType) or type_.name.startswith("__"):
            continue
        for name, field in type_.fields.items():
            key = (type_.name, name)
            paged = key in cost_tables.PAGED_FIELDS or key in cost_tables.SUMMARY_FIELDS
            if "first" in field.args or "last" in field.args:
                checked += 1
                if not paged:
                    missing.append(key)
            elif is_list_of_objects(field.type):
                checked += 1
                if key not in cost_tables.FIXED_LIST_SIZES:
                    missing.append(key)
    assert checked > 20 and missing == []
    # And the tables name nothing the schema does not have.
    for type_name, field_name in [*cost_tables.FIXED_LIST_SIZES, *cost_tables.PAGED_FIELDS, *cost_tables.SUMMARY_FIELDS]:
        named = schema._schema.get_type(type_name)
        assert isinstance(named, GraphQLObjectType) and field_name in named.fields, (type_name, field_name)


async def test_the_audits_bomb_is_refused_without_variables(secure: Clients) -> None:
    headers = secure.headers("affiliate", AFFILIATE)
    for variables in (None, {"n": 100}):
        response = await secure.post(headers, AFFILIATE_BOMB, variables)
        error = response.json()["errors"][0]
        assert error["extensions"]["code"] == "QUERY_TOO_COSTLY" and "2030201" in error["message"], response.text
    small = await secure.post(headers, AFFILIATE_BOMB.replace("= 100", "= 2"))
    assert "errors" not in small.json(), small.text
