"""Every bad input gets a clear message and a code; unknown ids are null; never a 500."""

from __future__ import annotations

import pytest

from tests.support.deployment import Api

BAD = [
    ("{ affiliates(first: 1000) { totalCount } }", "first must be between 0 and 100, got 1000"),
    ("{ affiliates(first: -1) { totalCount } }", "first must be between 0 and 100"),
    ("{ ranking(first: 101) { totalCount } }", "first must be between 0 and 100"),
    ('{ affiliate(id: "300") { referrals(first: 1000) { totalCount } } }', "first must be between"),
    ('{ affiliate(id: "300") { referrals(level: 0) { totalCount } } }', "level must be between 1 and 5, got 0"),
    ('{ affiliate(id: "300") { referrals(level: 6) { totalCount } } }', "level must be between 1 and 5, got 6"),
    ('{ affiliate(id: "300") { cpaValidations(level: 6) { totalCount } } }', "level must be between 1 and 5"),
    ('{ affiliate(id: "300") { transactions(level: 0) { totalCount } } }', "level must be between 1 and 5"),
    ('{ affiliate(id: "300") { transactions(from: "2025-04-01T00:00:00Z", to: "2025-03-01T00:00:00Z") '
     '{ totalCount } } }', "from (2025-04-01T00:00:00+00:00) is after to (2025-03-01T00:00:00+00:00)"),
    ('{ affiliate(id: "300") { summaries(period: DAILY, from: "2025-04-01", to: "2025-03-01") { cpaEarned } } }',
     "from (2025-04-01) is after to (2025-03-01)"),
    ('{ affiliate(id: "300") { summaries(period: DAILY, last: 0) { cpaEarned } } }', "last must be between 1"),
    ('{ affiliates(after: "not-a-cursor") { totalCount } }', "after is not a valid cursor for this list"),
    ('{ affiliates(after: "W10") { totalCount } }', "after is not a valid cursor"),
    ('{ affiliate(id: "300") { referrals(after: "!!!") { totalCount } } }', "after is not a valid cursor"),
    ('{ affiliate(id: "abc") { id } }', "id must be a positive integer id, got 'abc'"),
    ('{ affiliate(id: "-5") { id } }', "id must be a positive integer id"),
    ('{ affiliate(id: "99999999999999999999") { id } }', "id must be a positive integer id"),
    ('mutation { validateCpa(affiliateId: "x1") { affiliateId } }', "affiliateId must be a positive integer id"),
    ('{ affiliates(filter: {search: "' + "x" * 201 + '"}) { totalCount } }', "at most 200 characters"),
]


@pytest.mark.parametrize(("query", "message"), BAD, ids=range(len(BAD)))
async def test_bad_argument(api: Api, query: str, message: str) -> None:
    error = await api.error(query)
    assert message in error["message"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "Traceback" not in str(error) and "sql" not in str(error).lower()


async def test_cursor_of_another_list_or_order(api: Api) -> None:
    data = await api.data('{ affiliates(first: 1) { pageInfo { endCursor } } '
                          'affiliate(id: "300") { referrals(first: 1) { pageInfo { endCursor } } } }')
    by_id = data["affiliates"]["pageInfo"]["endCursor"]
    referral = data["affiliate"]["referrals"]["pageInfo"]["endCursor"]
    for query, cursor in (
        ("query($c: String) { affiliates(after: $c, orderBy: {field: TOTAL_GGR}) { totalCount } }", by_id),
        ("query($c: String) { ranking(after: $c) { totalCount } }", by_id),
        ('query($c: String) { affiliate(id: "300") { transactions(after: $c) { totalCount } } }', referral),
    ):
        error = await api.error(query, {"c": cursor})
        assert error["extensions"]["code"] == "BAD_USER_INPUT"


@pytest.mark.parametrize(("query", "variables", "code"), [
    ("{ affiliates(first: 1000", None, "GRAPHQL_PARSE_FAILED"),
    ("{ affiliates { nope } }", None, "GRAPHQL_VALIDATION_FAILED"),
    ('{ affiliates(first: "ten") { totalCount } }', None, "BAD_USER_INPUT"),
    ("query($f: Int) { affiliates(first: $f) { totalCount } }", {"f": "ten"}, "BAD_USER_INPUT"),
    ('query($d: Date) { affiliate(id: 300) { summaries(period: DAILY, from: $d) { cpaEarned } } }',
     {"d": "yesterday"}, "BAD_USER_INPUT"),
    ('{ affiliate(id: 300) { summaries(period: HOURLY) { cpaEarned } } }', None, "BAD_USER_INPUT"),
    ('{ affiliate { id } }', None, "BAD_USER_INPUT"),
    ('{ affiliates(foo: 1) { totalCount } }', None, "GRAPHQL_VALIDATION_FAILED"),
])
async def test_malformed_documents(api: Api, query: str, variables: dict | None, code: str) -> None:
    response = await api.client.post("/graphql", json={"query": query, "variables": variables})
    assert response.status_code in (200, 400)
    error = response.json()["errors"][0]
    assert error["extensions"]["code"] == code, error
    assert "Traceback" not in response.text


async def test_not_json_and_no_query(api: Api) -> None:
    for body in (b"{not json", b"{}"):
        response = await api.client.post("/graphql", content=body, headers={"content-type": "application/json"})
        assert response.status_code == 400 and "Traceback" not in response.text


async def test_first_zero_is_an_empty_page(api: Api) -> None:
    conn = (await api.data("{ affiliates(first: 0) { totalCount edges { cursor } pageInfo { hasNextPage endCursor } } }"))
    assert conn["affiliates"]["edges"] == [] and conn["affiliates"]["pageInfo"]["hasNextPage"] is True
    assert conn["affiliates"]["totalCount"] > 60
