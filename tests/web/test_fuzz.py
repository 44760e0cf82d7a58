"""Fuzzing the served API (issue 13): valid GraphQL documents generated from the schema
(hypothesis-graphql) and random JSON bodies, as an affiliate and as an admin. Whatever comes
in: never a 5xx, always the GraphQL errors shape with a code, and an affiliate's answers never
hold an id outside its own scope (itself and its five-level downline).

Admins are fuzzed with queries only: their mutations would write to the shared deployment.
An affiliate's mutations are refused before they run, so they are fuzzed too."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import hypothesis_graphql
import orjson
import pytest
from graphql import (
    DocumentNode,
    FieldNode,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    OperationDefinitionNode,
    get_named_type,
    parse,
)
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from schema.root import schema
from tests.support.clients import AFFILIATE, Clients
from tests.support.deployment import rows

GRAPHQL_SCHEMA: GraphQLSchema = schema._schema
# Fields whose value is the id of a user or an affiliate (a transaction's or a validation's own
# `id` is not); an Affiliate's `id` is checked too.
USER_ID_FIELDS = {"affiliateId", "referredUserId", "userId"}
EXAMPLES = 60  # per test: the whole file stays well under a minute on the CI machine

_scalar = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False),
                    st.text(max_size=30))
JSON = st.recursive(_scalar, lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=20)
# Bodies shaped like GraphQL requests, with every member of the wrong kind now and then.
REQUESTS = st.fixed_dictionaries({}, optional={
    "query": st.one_of(st.text(max_size=60), JSON, st.just("{ me { id } }")),
    "variables": JSON,
    "operationName": JSON,
    "extensions": JSON,
})
DATES = st.dates().map(lambda d: d.isoformat())
CUSTOM_SCALARS = {
    "Decimal": st.decimals(allow_nan=False, allow_infinity=False, places=2).map(
        lambda d: hypothesis_graphql.nodes.String(str(d))),
    "Date": DATES.map(hypothesis_graphql.nodes.String),
    "DateTime": st.datetimes().map(lambda d: hypothesis_graphql.nodes.String(d.isoformat())),
    "JSON": st.text(max_size=10).map(hypothesis_graphql.nodes.String),
    # Ids of the shared tree, in and out of affiliate 301's scope (its upline 300, its sibling
    # 302, its downline 326 and 341, the EXAMPLE network's 101), and now and then any text.
    "ID": st.one_of(st.sampled_from(["300", "301", "302", "326", "341", "101", "999999"]),
                    st.text(max_size=8)).map(hypothesis_graphql.nodes.String),
}
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def assert_well_formed(status: int, raw: bytes) -> Any:
    """No server error, a JSON body, and every error with a message and a code."""
    assert status < 500, (status, raw[:300])
    body = orjson.loads(raw)
    errors = body.get("errors") if isinstance(body, dict) else None
    if errors is not None:
        assert isinstance(errors, list) and errors
        for error in errors:
            assert isinstance(error.get("message"), str)
            assert isinstance(error.get("extensions", {}).get("code"), str), error
    return body


def ids_in(value: Any, parent: GraphQLObjectType | None, selections: list[FieldNode]) -> Iterator[str]:
    """The user and affiliate ids in a response value, walked with the document's selections."""
    if isinstance(value, list):
        for item in value:
            yield from ids_in(item, parent, selections)
        return
    if not isinstance(value, dict) or parent is None:
        return
    for node in selections:
        key = node.alias.value if node.alias else node.name.value
        if key not in value or value[key] is None:
            continue
        if node.name.value in USER_ID_FIELDS or (parent.name == "Affiliate" and node.name.value == "id"):
            yield str(value[key])
        field = parent.fields.get(node.name.value)
        if field is not None and node.selection_set is not None:
            child = get_named_type(field.type)
            inner = [s for s in node.selection_set.selections if isinstance(s, FieldNode)]
            yield from ids_in(value[key], child if isinstance(child, GraphQLObjectType) else None, inner)


def answered_ids(document: DocumentNode, data: Any) -> set[str]:
    operation = next(d for d in document.definitions if isinstance(d, OperationDefinitionNode))
    root = GRAPHQL_SCHEMA.get_root_type(operation.operation)
    fields = [s for s in operation.selection_set.selections if isinstance(s, FieldNode)]
    return set(ids_in(data, root, fields))


@pytest.fixture(scope="module")
async def scope_of_affiliate(secure: Clients) -> set[str]:
    downline = await rows(secure.api.app.state.api.robust_url,
                          "SELECT referred_id FROM affiliate_referrals WHERE referrer_id = $1", AFFILIATE)
    return {str(AFFILIATE), *(str(r["referred_id"]) for r in downline)}


def test_the_list_fields_are_walked() -> None:
    # The id walk itself: a nested answer's affiliate and user ids are all found.
    document = parse('{ affiliate(id: "1") { id upline { id } referrals { nodes { referredUserId } } } }')
    data = {"affiliate": {"id": "1", "upline": [{"id": "2"}],
                          "referrals": {"nodes": [{"referredUserId": "3"}]}}}
    assert answered_ids(document, data) == {"1", "2", "3"}
    assert isinstance(GRAPHQL_SCHEMA.get_type("Affiliate"), GraphQLObjectType)
    assert not isinstance(GRAPHQL_SCHEMA.get_type("Affiliate"), GraphQLList | GraphQLNonNull)


@FUZZ
@given(document=hypothesis_graphql.from_schema(GRAPHQL_SCHEMA, custom_scalars=CUSTOM_SCALARS))
async def test_generated_documents_as_an_affiliate(
    secure: Clients, scope_of_affiliate: set[str], document: str
) -> None:
    response = await secure.api.client.post("/graphql", json={"query": document},
                                            headers=secure.headers("affiliate", AFFILIATE))
    body = assert_well_formed(response.status_code, response.content)
    if isinstance(body, dict) and body.get("data"):
        leaked = answered_ids(parse(document), body["data"]) - scope_of_affiliate
        assert not leaked, (document, leaked)


@FUZZ
@given(document=hypothesis_graphql.queries(GRAPHQL_SCHEMA, custom_scalars=CUSTOM_SCALARS))
async def test_generated_queries_as_an_admin(secure: Clients, document: str) -> None:
    response = await secure.api.client.post("/graphql", json={"query": document},
                                            headers=secure.headers("admin"))
    assert_well_formed(response.status_code, response.content)


# Variables nested 1000 lists deep, sent as raw JSON (the client's encoder would recurse).
DEEP = b'{"query": "query Q($v: Int) { me { id } }", "variables": {"v": ' + b"[" * 1000 + b"]" * 1000 + b"}}"


@FUZZ
@given(body=st.one_of(REQUESTS, st.lists(REQUESTS, max_size=3), JSON))
# The audit's shapes: a nested batch, junk in a batch, an operationName of the wrong kind, and
# variables nested 1000 lists deep.
@example(body=[[{"query": "{ me { id } }"}]])
@example(body=[{"query": "{ me { id } }"}, "junk"])
@example(body={"query": "{ me { id } }", "operationName": 5})
@example(body={"query": "{ me { id } }", "operationName": ["x"]})
@example(body=DEEP)
async def test_random_bodies(secure: Clients, body: Any) -> None:
    for role in ("affiliate", "admin"):
        headers = secure.headers(role, AFFILIATE if role == "affiliate" else None)
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        response = await secure.api.client.post("/graphql", content=raw,
                                                headers={**headers, "content-type": "application/json"})
        assert_well_formed(response.status_code, response.content)
