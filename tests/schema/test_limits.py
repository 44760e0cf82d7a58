"""Hostile documents are refused with a code before anything runs: depth, aliases, tokens,
cost, batches; no field suggestions leak; introspection per role."""

from __future__ import annotations

import pytest

from tests.support.clients import AFFILIATE, Clients


def nested(depth: int) -> str:
    inner = "id"
    for _ in range(depth):
        inner = f"referrals(first: 1) {{ nodes {{ referredAffiliate {{ {inner} }} }} }}"
    return f'{{ affiliate(id: "300") {{ {inner} }} }}'


async def error_of(secure: Clients, query: str, role: str = "admin", variables: dict | None = None) -> dict:
    response = await secure.post(secure.headers(role, AFFILIATE if role == "affiliate" else None), query, variables)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body.get("errors") and body.get("data") is None, body
    return body["errors"][0]


async def test_depth_bomb(secure: Clients) -> None:
    error = await error_of(secure, nested(6))
    assert error["extensions"]["code"] == "QUERY_TOO_DEEP" and "maximum operation depth of 10" in error["message"]
    assert (await secure.data(secure.headers("admin"), nested(2)))["affiliate"]["referrals"]["nodes"]


async def test_alias_bomb(secure: Clients) -> None:
    query = "{ " + " ".join(f'a{i}: affiliate(id: "300") {{ id }}' for i in range(40)) + " }"
    error = await error_of(secure, query)
    assert error["extensions"]["code"] == "TOO_MANY_ALIASES" and error["message"] == "40 aliases found. Allowed: 30"


async def test_token_bomb(secure: Clients) -> None:
    query = "{ " + "__typename " * 5000 + "}"
    error = await error_of(secure, query)
    assert error["extensions"]["code"] == "TOO_MANY_TOKENS"


@pytest.mark.parametrize("variables", [None, {"n": 100}])
async def test_cost_bomb(secure: Clients, variables: dict | None) -> None:
    page = "$n" if variables else "100"
    query = (f"query{'($n: Int)' if variables else ''} {{ affiliates(first: {page}) {{ nodes {{ referrals(first: {page}) {{ nodes {{ "
             f"referredAffiliate {{ transactions(first: {page}) {{ nodes {{ amount }} }} }} }} }} }} }} }}")
    error = await error_of(secure, query, variables=variables)
    assert error["extensions"]["code"] == "QUERY_TOO_COSTLY" and "exceeds the budget of 50000" in error["message"]
    small = query.replace(page, "3") if not variables else query
    if not variables:
        assert "errors" not in (await secure.post(secure.headers("admin"), small)).json()
    else:
        ok = await secure.post(secure.headers("admin"), query, {"n": 3})
        assert "errors" not in ok.json()


async def test_batches_are_capped(secure: Clients) -> None:
    headers = secure.headers("admin")
    batch = [{"query": f'{{ affiliate(id: "{300 + i}") {{ id: affiliateId }} }}'} for i in range(10)]
    ok = await secure.api.client.post("/graphql", json=batch, headers=headers)
    assert ok.status_code == 200 and [b["data"]["affiliate"]["id"] for b in ok.json()] == [str(300 + i) for i in range(10)]
    too_many = await secure.api.client.post("/graphql", json=batch + batch[:1], headers=headers)
    assert too_many.status_code == 400
    assert too_many.json()["errors"][0]["extensions"]["code"] == "BATCH_TOO_LARGE"


@pytest.mark.parametrize("query", [
    '{ affiliate(id: "300") { nam } }',
    '{ affiliat(id: "300") { id } }',
    '{ affiliate(id: "300") { summaries(period: DAIL) { cpaEarned } } }',
    '{ affiliate(idd: "300") { id } }',
    '{ affiliates(orderBy: {field: TOTAL_CPA}) { totalCount } }',
])
async def test_no_field_suggestions(secure: Clients, query: str) -> None:
    for role in ("admin", "affiliate"):
        response = await secure.post(secure.headers(role, AFFILIATE if role == "affiliate" else None), query)
        assert "Did you mean" not in response.text and "errors" in response.json(), response.text
        assert response.json()["errors"][0]["extensions"]["code"] in {"GRAPHQL_VALIDATION_FAILED", "BAD_USER_INPUT"}


async def test_no_suggestions_for_variables(secure: Clients) -> None:
    response = await secure.post(secure.headers("admin"),
                                 "query($p: PeriodType!) { affiliate(id: 300) { summaries(period: $p) { cpaEarned } } }",
                                 {"p": "DAIL"})
    assert "Did you mean" not in response.text and response.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_introspection_per_role(secure: Clients) -> None:
    query = "{ __schema { queryType { name } } }"
    for role in ("admin", "analyst"):
        assert (await secure.data(secure.headers(role), query))["__schema"]["queryType"]["name"] == "Query"
    error = await error_of(secure, query, role="affiliate")
    assert error["extensions"]["code"] == "INTROSPECTION_DISABLED"
    typename = await secure.data(secure.headers("affiliate", AFFILIATE), "{ __typename me { id: affiliateId } }")
    assert typename == {"__typename": "Query", "me": {"id": str(AFFILIATE)}}
