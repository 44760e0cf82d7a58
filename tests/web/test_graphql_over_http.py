"""GraphQL over HTTP: the media type negotiated from Accept, the status of each class of request
error under each media type, 406, the edge's refusals in the negotiated type, batches, GET rules
and malformed requests (always a coded JSON error, never a 500)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.support.clients import AFFILIATE, Clients
from tests.support.deployment import Deployment, serve, token

GQL = "application/graphql-response+json"
JSON = "application/json"
ME = "{ me { id } }"
PAGE = "query Page($n: Int!) { affiliates(first: $n) { edges { node { name } } } }"


async def post(clients: Clients, body: Any, accept: str | None, role: str = "admin",
               content_type: str = "application/json") -> httpx.Response:
    headers = {**clients.headers(role, AFFILIATE if role == "affiliate" else None), "content-type": content_type}
    if accept is not None:
        headers["accept"] = accept
    raw = body if isinstance(body, bytes) else httpx.Request("POST", "http://x", json=body).content
    return await clients.api.client.post("/graphql", content=raw, headers=headers)


def media(response: httpx.Response) -> str:
    return response.headers["content-type"]


@pytest.mark.parametrize("accept,expected", [
    (GQL, f"{GQL}; charset=utf-8"),
    (JSON, f"{JSON}; charset=utf-8"),
    (None, f"{JSON}; charset=utf-8"),  # a legacy client
    ("", f"{JSON}; charset=utf-8"),
    ("*/*", f"{JSON}; charset=utf-8"),
    ("application/*", f"{JSON}; charset=utf-8"),
    (f"{GQL},{JSON};q=0.9", f"{GQL}; charset=utf-8"),  # Apollo Client 4's default
    (f"{JSON}, {GQL}", f"{GQL}; charset=utf-8"),
    (f"{JSON};q=0.9, {GQL};q=0.5", f"{JSON}; charset=utf-8"),
    (f"text/html, {GQL};q=0.2", f"{GQL}; charset=utf-8"),
    (f"{GQL};q=0, */*;q=0.1", f"{JSON}; charset=utf-8"),
])
async def test_the_answer_is_in_the_negotiated_media_type(secure: Clients, accept: str | None,
                                                          expected: str) -> None:
    response = await post(secure, {"query": "{ __typename }"}, accept)
    assert response.status_code == 200, response.text
    assert media(response) == expected
    assert response.json()["data"] == {"__typename": "Query"}


@pytest.mark.parametrize("accept", ["text/html", "application/xml, text/plain;q=0.5", f"{GQL};q=0, {JSON};q=0"])
async def test_an_accept_allowing_neither_json_type_is_406(secure: Clients, accept: str) -> None:
    response = await post(secure, {"query": "{ __typename }"}, accept)
    assert response.status_code == 406 and media(response).startswith(JSON)
    assert response.json()["errors"][0]["extensions"]["code"] == "NOT_ACCEPTABLE"


# Each class of request error: its body, its code, its status under graphql-response+json.
REQUEST_ERRORS = [
    ("parse", {"query": "{"}, "GRAPHQL_PARSE_FAILED", 400),
    ("validation", {"query": "{ nope }"}, "GRAPHQL_VALIDATION_FAILED", 400),
    ("variable coercion", {"query": PAGE, "variables": {"n": "many"}}, "BAD_USER_INPUT", 400),
    ("missing variable", {"query": PAGE, "variables": {}}, "BAD_USER_INPUT", 400),
    ("too deep", {"query": "{ me { " + "upline { " * 11 + "id" + " }" * 11 + " } }"}, "QUERY_TOO_DEEP", 400),
    ("unknown operation", {"query": "query A { me { id } }", "operationName": "B"}, "BAD_REQUEST", 400),
]


@pytest.mark.parametrize("case,body,code,status", REQUEST_ERRORS, ids=[c[0] for c in REQUEST_ERRORS])
async def test_request_errors_per_media_type(secure: Clients, case: str, body: dict[str, Any], code: str,
                                             status: int) -> None:
    strict = await post(secure, body, GQL)
    assert strict.status_code == status, strict.text
    assert media(strict) == f"{GQL}; charset=utf-8"
    assert "data" not in strict.json(), strict.json()  # execution never began
    assert strict.json()["errors"][0]["extensions"]["code"] == code
    for accept in (JSON, None):
        legacy = await post(secure, body, accept)
        expected = 400 if code == "BAD_REQUEST" else 200  # strawberry refuses an unknown operation name
        assert legacy.status_code == expected, legacy.text
        assert media(legacy) == f"{JSON}; charset=utf-8"
        assert "data" not in legacy.json()
        assert legacy.json()["errors"][0]["extensions"]["code"] == code


async def test_the_cost_limit_is_a_request_error(deployment: Deployment) -> None:
    async with serve(deployment, max_query_cost=100) as api:
        for accept, status in ((GQL, 400), (JSON, 200)):
            response = await api.client.post("/graphql", json={"query": PAGE, "variables": {"n": 100}},
                                              headers={"accept": accept})
            assert response.status_code == status, response.text
            body = response.json()
            assert "data" not in body and body["errors"][0]["extensions"]["code"] == "QUERY_TOO_COSTLY"
        small = await api.client.post("/graphql", json={"query": PAGE, "variables": {"n": 2}},
                                      headers={"accept": GQL})
        assert small.status_code == 200 and len(small.json()["data"]["affiliates"]["edges"]) == 2


async def test_a_field_error_keeps_200_and_its_data(secure: Clients) -> None:
    # An affiliate may not list plans: a field error during execution, not a request error.
    response = await post(secure, {"query": "{ me { id } commissionPlans { id } }"}, GQL, role="affiliate")
    assert response.status_code == 200, response.text
    body = response.json()
    assert "data" in body and body["errors"][0]["extensions"]["code"] == "FORBIDDEN"


@pytest.mark.parametrize("accept", [GQL, JSON, None])
async def test_the_edge_refusals_follow_the_media_type(deployment: Deployment, accept: str | None) -> None:
    expected = f"{accept or JSON}; charset=utf-8"
    headers = {"accept": accept} if accept else {}
    async with serve(deployment, role=None, rate_limit_enabled=True, rate_limit="2/minute",
                     max_body_bytes=2048) as api:
        unauthenticated = await api.client.post("/graphql", json={"query": ME}, headers=headers)
        assert unauthenticated.status_code == 401 and media(unauthenticated) == expected
        assert unauthenticated.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
        big = await api.client.post("/graphql", content=b"{" + b" " * 4096 + b"}",
                                    headers={**headers, "content-type": JSON})
        assert big.status_code == 413 and media(big) == expected
        bearer = {**headers, "authorization": f"Bearer {token(api.app.state.api.settings, 'admin')}"}
        statuses = [(await api.client.post("/graphql", json={"query": "{ __typename }"}, headers=bearer))
                    for _ in range(3)]
        assert [r.status_code for r in statuses] == [200, 200, 429]
        assert media(statuses[2]) == expected and "retry-after" in statuses[2].headers
        assert statuses[2].json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
        # REST keeps its own shape and type.
        rest = await api.client.get("/api/v1/affiliates/300", headers=headers)
        assert rest.status_code == 401 and media(rest) == JSON


async def test_batches_in_graphql_response_json(secure: Clients) -> None:
    response = await post(secure, [{"query": "{ __typename }"}, {"query": "{"}], GQL)
    assert response.status_code == 200 and media(response) == f"{GQL}; charset=utf-8"
    first, second = response.json()
    assert first["data"] == {"__typename": "Query"}
    assert "data" not in second and second["errors"][0]["extensions"]["code"] == "GRAPHQL_PARSE_FAILED"


async def test_get_rules(secure: Clients) -> None:
    headers = {**secure.headers("admin"), "accept": GQL}
    query = await secure.api.client.get("/graphql", params={"query": "{ __typename }"}, headers=headers)
    assert query.status_code == 200 and media(query) == f"{GQL}; charset=utf-8"
    mutation = await secure.api.client.get(
        "/graphql", params={"query": 'mutation M { validateCpa(affiliateId: "1") { affiliateId } }'},
        headers=headers)
    assert mutation.status_code == 405 and mutation.headers["allow"] == "POST"
    assert mutation.json()["errors"][0]["extensions"]["code"] == "METHOD_NOT_ALLOWED"
    # The document's query operation may still be chosen over GET.
    chosen = await secure.api.client.get(
        "/graphql", params={"query": "query Q { __typename } mutation M { validateCpa(affiliateId: \"1\") "
                            "{ affiliateId } }", "operationName": "Q"}, headers=headers)
    assert chosen.status_code == 200 and chosen.json()["data"] == {"__typename": "Query"}


@pytest.mark.parametrize("body,content_type,status", [
    (b"[1, 2]", JSON, 400),
    (b'"a string"', JSON, 400),
    (b"42", JSON, 400),
    (b'{"query": "{ __typename }", "operationName": {"a": 1}}', JSON, 400),
    (b'{"query": "{ __typename }", "operationName": ["a"]}', JSON, 400),
    (b'{"query": {"a": 1}}', JSON, 400),
    (b'{"qeury": "{ __typename }"}', JSON, 400),
    (b'{"query": "{ __typename }", "variables": "x"}', JSON, 400),
    (b'{ "not a JSON', JSON, 400),
    (b"\xff\xfe", JSON, 400),
    (b'{"query": "{ __typename }"}', "text/plain", 415),
    (b'{"query": "{ __typename }"}', "application/graphql", 415),
])
@pytest.mark.parametrize("accept", [GQL, JSON])
async def test_malformed_requests_are_coded_json_errors(secure: Clients, body: bytes, content_type: str,
                                                        status: int, accept: str) -> None:
    response = await post(secure, body, accept, content_type=content_type)
    assert response.status_code == status, response.text
    assert media(response) == f"{accept}; charset=utf-8"
    error = response.json()["errors"][0]
    assert error["extensions"]["code"] in {"BAD_REQUEST", "UNSUPPORTED_MEDIA_TYPE"}, error
