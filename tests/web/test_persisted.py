"""Persisted operations: Apollo's automatic persisted queries over real HTTP (memory and Redis,
two processes sharing Redis), hash checks, a hashed document validated and cost-checked like one
sent in full, trusted documents per mode, the manifest's checks at start and its pinned cache
entries, the manifest CLI, and the function the subscriptions call."""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from typer.testing import CliRunner

from resolvers.viewer import Role, Viewer
from schema.documents import DOCUMENTS
from tests.support.clients import AFFILIATE, CHILD, Clients
from tests.support.deployment import Deployment, serve, token
from tests.support.live import uvicorn_serving
from web.errors import Rejected
from web.graphiql import DASHBOARD_QUERY
from web.manifest import MANIFEST_FORMAT, ManifestError, build_manifest, read_manifest, sha256_hex
from web.persisted import PersistedOperations, resolve_document

GQL = "application/graphql-response+json"
EXAMPLE_MANIFEST = Path(__file__).resolve().parents[2] / "web" / "documents" / "manifest.json"
EXAMPLE_DOCUMENTS = EXAMPLE_MANIFEST.parent


def unique_query() -> str:
    """A document no store has seen (a fresh alias), so each test's hash starts unknown."""
    return f"query Fresh {{ syncStatus {{ dataAsOf }} a{uuid.uuid4().hex}: __typename }}"


def apq(query: str | None, sha256: str | None = None, **members: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"extensions": {"persistedQuery": {"version": 1,
                                                              "sha256Hash": sha256 or sha256_hex(query or "")}}}
    if query is not None:
        body["query"] = query
    return {**body, **members}


def code(response: httpx.Response) -> str:
    return str(response.json()["errors"][0]["extensions"]["code"])


async def test_apollo_round_trip_over_real_http(deployment: Deployment) -> None:
    query = unique_query()
    sha256 = sha256_hex(query)
    bearer = {"authorization": f"Bearer {token(deployment.settings, 'affiliate', AFFILIATE)}"}
    async with uvicorn_serving(deployment.settings, deployment.robust_url, log_level="warning") as url, \
            httpx.AsyncClient(base_url=url, headers=bearer) as client:
        # 1. The hash alone, unknown: Apollo's link recognises the message and code and retries.
        for accept in ("application/json", GQL):
            missing = await client.post("/graphql", json=apq(None, sha256), headers={"accept": accept})
            assert missing.status_code == 200, missing.text
            assert missing.headers["content-type"].startswith(accept)
            assert missing.headers["cache-control"] == "private, no-cache, must-revalidate"
            error = missing.json()["errors"][0]
            assert error["message"] == "PersistedQueryNotFound"
            assert error["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"
        # 2. The hash with the query: run and registered.
        full = await client.post("/graphql", json=apq(query))
        assert full.status_code == 200 and "errors" not in full.json(), full.text
        # 3. The hash alone now runs it, by POST and by GET (useGETForHashedQueries).
        hashed = await client.post("/graphql", json=apq(None, sha256))
        assert hashed.status_code == 200 and hashed.json()["data"] == full.json()["data"]
        get = await client.get("/graphql", params={
            "operationName": "Fresh",
            "extensions": json.dumps({"persistedQuery": {"version": 1, "sha256Hash": sha256}})},
            headers={"accept": "*/*"})
        assert get.status_code == 200 and get.json()["data"] == full.json()["data"], get.text
        # A GET with a hash is an operation, never GraphiQL's page (even from a browser).
        page = await client.get("/graphql", params={"extensions": json.dumps(
            {"persistedQuery": {"version": 1, "sha256Hash": sha256}})}, headers={"accept": "text/html,*/*"})
        assert page.status_code == 200 and page.json()["data"] == full.json()["data"]


async def test_two_processes_share_the_store_through_redis(deployment: Deployment) -> None:
    settings = deployment.settings.model_copy(update={"redis_url": "redis://127.0.0.1:6379/0"})
    query = unique_query()
    sha256 = sha256_hex(query)
    bearer = {"authorization": f"Bearer {token(settings, 'analyst')}"}
    async with uvicorn_serving(settings, deployment.robust_url, log_level="warning") as one, \
            uvicorn_serving(settings, deployment.robust_url, log_level="warning") as two, \
            httpx.AsyncClient(headers=bearer) as client:
        assert code(await client.post(f"{two}/graphql", json=apq(None, sha256))) == "PERSISTED_QUERY_NOT_FOUND"
        registered = await client.post(f"{one}/graphql", json=apq(query))
        assert registered.status_code == 200 and "errors" not in registered.json()
        served = await client.post(f"{two}/graphql", json=apq(None, sha256))
        assert served.status_code == 200 and served.json()["data"] == registered.json()["data"], served.text


async def test_redis_down_means_misses_and_queries_still_run(deployment: Deployment) -> None:
    query = unique_query()
    async with serve(deployment, role="analyst", redis_url="redis://127.0.0.1:9/0", cache_enabled=False,
                     cache_timeout_seconds=0.2) as api:
        for body in (apq(None, sha256_hex(query)), apq(query), apq(None, sha256_hex(query))):
            response = await api.client.post("/graphql", json=body)
            if "query" in body:  # Apollo's retry: runs, though nothing can be kept
                assert response.status_code == 200 and "errors" not in response.json(), response.text
            else:
                assert response.status_code == 200 and code(response) == "PERSISTED_QUERY_NOT_FOUND"


async def test_with_apq_off_apollo_is_told_it_is_not_supported(deployment: Deployment) -> None:
    query = unique_query()
    async with serve(deployment, role="analyst", apq_enabled=False) as api:
        refused = await api.client.post("/graphql", json=apq(None, sha256_hex(query)))
        assert refused.status_code == 200 and code(refused) == "PERSISTED_QUERY_NOT_SUPPORTED"
        assert refused.json()["errors"][0]["message"] == "PersistedQueryNotSupported"  # Apollo stops hashing
        ran = await api.client.post("/graphql", json=apq(query))
        assert "errors" not in ran.json()
        again = await api.client.post("/graphql", json=apq(None, sha256_hex(query)))
        assert code(again) == "PERSISTED_QUERY_NOT_SUPPORTED"  # nothing was kept


async def test_a_hash_that_is_not_the_query_s_is_refused(secure: Clients) -> None:
    query = unique_query()
    wrong = hashlib.sha256(b"something else").hexdigest()
    headers = secure.headers("admin")
    refused = await secure.api.client.post("/graphql", json=apq(query, wrong), headers=headers)
    assert refused.status_code == 400 and code(refused) == "PERSISTED_QUERY_HASH_MISMATCH"
    # Nothing was registered under either hash.
    for sha256 in (wrong, sha256_hex(query)):
        again = await secure.api.client.post("/graphql", json=apq(None, sha256), headers=headers)
        assert code(again) == "PERSISTED_QUERY_NOT_FOUND"


@pytest.mark.parametrize("persisted,expected", [
    ({"version": 2, "sha256Hash": "a" * 64}, "PERSISTED_QUERY_NOT_SUPPORTED"),
    ({"version": "1", "sha256Hash": "a" * 64}, "PERSISTED_QUERY_NOT_SUPPORTED"),
    ({"sha256Hash": "a" * 64}, "PERSISTED_QUERY_NOT_SUPPORTED"),
    ({"version": 1, "sha256Hash": "xyz"}, "BAD_REQUEST"),
    ({"version": 1, "sha256Hash": 5}, "BAD_REQUEST"),
    ({"version": 1}, "BAD_REQUEST"),
    ("yes", "BAD_REQUEST"),
])
async def test_malformed_persisted_query_extensions(secure: Clients, persisted: Any, expected: str) -> None:
    response = await secure.api.client.post("/graphql", json={"extensions": {"persistedQuery": persisted}},
                                            headers=secure.headers("admin"))
    assert response.status_code == 400 and code(response) == expected, response.text


async def test_documents_that_fail_are_not_registered(secure: Clients) -> None:
    headers = secure.headers("admin")
    for query in ("query Broken { syncStatus {", f"query Invalid {{ nope{uuid.uuid4().hex} }}"):
        failed = await secure.api.client.post("/graphql", json=apq(query), headers=headers)
        assert code(failed) in {"GRAPHQL_PARSE_FAILED", "GRAPHQL_VALIDATION_FAILED"}
        again = await secure.api.client.post("/graphql", json=apq(None, sha256_hex(query)), headers=headers)
        assert code(again) == "PERSISTED_QUERY_NOT_FOUND"


async def test_a_hashed_document_is_checked_like_one_sent_in_full(deployment: Deployment) -> None:
    plans = f"query Plans {{ commissionPlans {{ id }} a{uuid.uuid4().hex}: __typename }}"
    schema_query = f"query Shape {{ __schema {{ queryType {{ name }} }} a{uuid.uuid4().hex}: __typename }}"
    page = f"query Page($n: Int!) {{ affiliates(first: $n) {{ edges {{ node {{ name }} }} }} a{uuid.uuid4().hex}: __typename }}"
    async with serve(deployment, role=None, max_query_cost=100) as api:
        settings = api.app.state.api.settings
        admin = {"authorization": f"Bearer {token(settings, 'admin')}"}
        affiliate = {"authorization": f"Bearer {token(settings, 'affiliate', AFFILIATE)}"}
        # The admin registers all three.
        for query, variables in ((plans, None), (schema_query, None), (page, {"n": 2})):
            done = await api.client.post("/graphql", json=apq(query, variables=variables), headers=admin)
            assert done.status_code == 200 and "errors" not in done.json(), done.text

        async def both(query: str, headers: dict[str, str], variables: Any = None) -> list[dict[str, Any]]:
            """The answers to the document in full and by its hash alone (asOf aside)."""
            answers = []
            for body in ({"query": query, "variables": variables}, apq(None, sha256_hex(query), variables=variables)):
                response = await api.client.post("/graphql", json=body, headers={**headers, "accept": GQL})
                answers.append({"status": response.status_code, **{k: v for k, v in response.json().items()
                                                                    if k != "extensions"}})
            return answers

        # An affiliate reaching a staff-only field by hash is refused exactly as in full.
        full, hashed = await both(plans, affiliate)
        assert full == hashed and hashed["errors"][0]["extensions"]["code"] == "FORBIDDEN"
        # Introspection (refused to affiliates by validation): the same by hash.
        full, hashed = await both(schema_query, affiliate)
        assert full == hashed and hashed["status"] == 400
        assert hashed["errors"][0]["extensions"]["code"] == "INTROSPECTION_DISABLED"
        full, hashed = await both(schema_query, admin)
        assert full == hashed and hashed["data"]["__schema"]["queryType"]["name"] == "Query"
        # The cost with this request's variables: cheap with 2, refused with 100, by hash as in full.
        full, hashed = await both(page, affiliate, {"n": 100})
        assert full == hashed and hashed["errors"][0]["extensions"]["code"] == "QUERY_TOO_COSTLY"
        full, hashed = await both(page, affiliate, {"n": 2})
        assert full == hashed and len(hashed["data"]["affiliates"]["edges"]) == 2


# --- Trusted documents ---------------------------------------------------------------------

MANIFEST_DOCUMENTS = {
    "me.graphql": "query Me { me { id name } }",
    "page.graphql": "query Team($n: Int!) { affiliates(first: $n) { edges { node { ...Who } } } }\n"
                    "fragment Who on Affiliate { name }",
}


def write_manifest(folder: Path) -> Path:
    for name, text in MANIFEST_DOCUMENTS.items():
        (folder / name).write_text(text)
    path = folder / "manifest.json"
    path.write_bytes(orjson.dumps(build_manifest([folder])))
    return path


async def test_trusted_documents_for_affiliates(deployment: Deployment, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path)
    operations = {o.name: o for o in read_manifest(manifest)}
    me, team = operations["Me"], operations["Team"]
    outsider = unique_query()
    async with serve(deployment, role=None, trusted_documents="affiliates",
                     trusted_documents_path=manifest) as api:
        settings = api.app.state.api.settings
        affiliate = {"authorization": f"Bearer {token(settings, 'affiliate', CHILD)}"}

        async def run(body: dict[str, Any], headers: dict[str, str]) -> httpx.Response:
            return await api.client.post("/graphql", json=body, headers=headers)

        # A manifest document by hash, without ever sending it, and by its full text.
        by_hash = await run(apq(None, me.id), affiliate)
        assert by_hash.status_code == 200 and by_hash.json()["data"]["me"]["name"], by_hash.text
        by_text = await run({"query": me.body}, affiliate)
        assert by_text.json()["data"] == by_hash.json()["data"]
        paged = await run(apq(None, team.id, variables={"n": 3}), affiliate)
        assert len(paged.json()["data"]["affiliates"]["edges"]) == 3, paged.text
        # Anything else: refused, in full, by APQ registration, by an unknown hash.
        for body in ({"query": outsider}, apq(outsider), apq(None, sha256_hex(outsider)),
                     {"query": me.body + " "}):
            refused = await run(body, affiliate)
            assert refused.status_code == 403 and code(refused) == "TRUSTED_DOCUMENT_REQUIRED", body
        # Staff are free: any document, APQ registers for them.
        for role in ("admin", "analyst"):
            staff = {"authorization": f"Bearer {token(settings, role)}"}
            assert "errors" not in (await run({"query": outsider}, staff)).json()
            assert "errors" not in (await run(apq(outsider), staff)).json()
        # ... and what staff registered is still refused to the affiliate.
        assert code(await run(apq(None, sha256_hex(outsider)), affiliate)) == "TRUSTED_DOCUMENT_REQUIRED"
        # REST and exports are not GraphQL documents: unaffected.
        rest = await api.client.get(f"/api/v1/affiliates/{CHILD}", headers=affiliate)
        assert rest.status_code == 200, rest.text


async def test_trusted_documents_for_everyone(deployment: Deployment, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path)
    me = next(o for o in read_manifest(manifest) if o.name == "Me")
    async with serve(deployment, role="admin", trusted_documents="all", trusted_documents_path=manifest) as api:
        refused = await api.client.post("/graphql", json={"query": unique_query()})
        assert refused.status_code == 403 and code(refused) == "TRUSTED_DOCUMENT_REQUIRED"
        allowed = await api.client.post("/graphql", json=apq(None, me.id))
        assert allowed.status_code == 200 and "errors" not in allowed.json(), allowed.text


async def test_with_trusted_documents_off_the_manifest_still_serves_its_hashes(
        deployment: Deployment, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path)
    me = next(o for o in read_manifest(manifest) if o.name == "Me")
    async with serve(deployment, role=None, trusted_documents_path=manifest) as api:
        affiliate = {"authorization": f"Bearer {token(api.app.state.api.settings, 'affiliate', CHILD)}"}
        assert "errors" not in (await api.client.post("/graphql", json=apq(None, me.id), headers=affiliate)).json()
        free = await api.client.post("/graphql", json={"query": unique_query()}, headers=affiliate)
        assert "errors" not in free.json()


async def test_manifest_entries_are_prewarmed_and_pinned(deployment: Deployment, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path)
    me = next(o for o in read_manifest(manifest) if o.name == "Me")
    async with serve(deployment, role="admin", trusted_documents_path=manifest) as api:
        settings = api.app.state.api.settings
        key = (hashlib.blake2b(me.body.encode(), digest_size=16).digest(), settings.max_tokens)
        warm = DOCUMENTS.get(key)
        assert warm is not None and len(warm.passed) == 2 and warm.costs  # both role rule sets, a cost
        DOCUMENTS.clear()  # as if the LRU had let every entry go
        response = await api.client.post("/graphql", json=apq(None, me.id))
        assert "errors" not in response.json()
        assert DOCUMENTS.get(key) is warm  # the same parsed, validated and costed entry


@pytest.mark.parametrize("operations,named", [
    ([{"id": "0" * 64, "name": "Me", "type": "query", "body": "query Me { me { id } }"}], "(Me): `id`"),
    ([{"id": sha256_hex("query Bad { nope }"), "name": "Bad", "type": "query", "body": "query Bad { nope }"}],
     "operation Bad: Cannot query field 'nope'"),
    ([{"id": sha256_hex("query Cut {"), "name": "Cut", "type": "query", "body": "query Cut {"}],
     "operation Cut: Syntax Error"),
    ([{"name": "NoId", "type": "query", "body": "query NoId { me { id } }"}], "(NoId): needs"),
])
def test_a_bad_manifest_stops_the_start_naming_the_operation(deployment: Deployment, tmp_path: Path,
                                                             operations: list[Any], named: str) -> None:
    path = tmp_path / "manifest.json"
    path.write_bytes(orjson.dumps({"format": MANIFEST_FORMAT, "version": 1, "operations": operations}))
    settings = deployment.settings.model_copy(update={"trusted_documents_path": path})
    with pytest.raises(ManifestError) as refused:
        PersistedOperations(settings)
    assert named in str(refused.value) and str(path) in str(refused.value)


def test_affiliates_mode_needs_a_manifest(deployment: Deployment) -> None:
    with pytest.raises(ManifestError, match="FATURE_TRUSTED_DOCUMENTS_PATH"):
        PersistedOperations(deployment.settings.model_copy(update={"trusted_documents": "affiliates"}))


def test_the_shipped_example_manifest_is_the_build_of_its_documents() -> None:
    assert orjson.loads(EXAMPLE_MANIFEST.read_bytes()) == build_manifest([EXAMPLE_DOCUMENTS])
    dashboard = next(o for o in read_manifest(EXAMPLE_MANIFEST) if o.name == "Dashboard")
    from graphql import parse, print_ast
    assert dashboard.body == print_ast(parse(DASHBOARD_QUERY))  # GraphiQL's dashboard query


def test_the_documents_cli_builds_and_lists_a_manifest(tmp_path: Path) -> None:
    from cli import app

    for name, text in MANIFEST_DOCUMENTS.items():
        (tmp_path / name).write_text(text)
    out = tmp_path / "out" / "manifest.json"
    runner = CliRunner()
    built = runner.invoke(app, ["documents", "build", str(tmp_path), "--output", str(out)])
    assert built.exit_code == 0, built.output
    operations = read_manifest(out)
    assert sorted(o.name for o in operations) == ["Me", "Team"]
    team = next(o for o in operations if o.name == "Team")
    assert "fragment Who on Affiliate" in team.body and team.id == sha256_hex(team.body)
    listed = runner.invoke(app, ["documents", "list", str(out)])
    assert listed.exit_code == 0, listed.output
    for operation in operations:
        assert operation.id in listed.output and operation.name in listed.output
    (tmp_path / "anon.graphql").write_text("{ me { id } }")
    refused = runner.invoke(app, ["documents", "build", str(tmp_path), "--output", str(out)])
    assert refused.exit_code != 0 and "needs a name" in refused.output


async def test_resolve_document_for_subscriptions(deployment: Deployment, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path)
    me = next(o for o in read_manifest(manifest) if o.name == "Me")
    settings = deployment.settings.model_copy(update={"trusted_documents": "affiliates",
                                                      "trusted_documents_path": manifest})

    class State:  # what resolve_document reads of ApiState
        def __init__(self) -> None:
            self.settings = settings
            self.persisted = PersistedOperations(settings)

    state = State()
    affiliate = Viewer(role=Role.AFFILIATE, affiliate_id=CHILD, subject="a")
    admin = Viewer(role=Role.ADMIN, affiliate_id=None, subject="b")
    ext = {"persistedQuery": {"version": 1, "sha256Hash": me.id}}
    assert await resolve_document(state, affiliate, None, ext) == me.body
    assert await resolve_document(state, affiliate, me.body, None) == me.body
    with pytest.raises(Rejected) as refused:
        await resolve_document(state, affiliate, "subscription S { x }", None)
    assert refused.value.code == "TRUSTED_DOCUMENT_REQUIRED"
    other = unique_query()
    other_ext = {"persistedQuery": {"version": 1, "sha256Hash": sha256_hex(other)}}
    with pytest.raises(Rejected) as missing:
        await resolve_document(state, admin, None, other_ext)
    assert missing.value.code == "PERSISTED_QUERY_NOT_FOUND"
    assert await resolve_document(state, admin, other, other_ext) == other  # registered
    assert await resolve_document(state, admin, None, other_ext) == other
    await state.persisted.close()


# --- Apollo Client's own link, in Node ------------------------------------------------------

APOLLO = ("graphql@16.11.0", "@apollo/client@4.0.7", "rxjs@7.8.2")
APOLLO_CLIENT = """
import { ApolloClient, InMemoryCache, HttpLink, gql } from '@apollo/client';
import { PersistedQueryLink } from '@apollo/client/link/persisted-queries';
import { CombinedGraphQLErrors } from '@apollo/client/errors';
import { createHash } from 'node:crypto';

const [url, bearer, alias] = process.argv.slice(2);
const seen = [];
const logged = async (input, init = {}) => {
  const response = await fetch(input, init);
  const text = await response.clone().text();
  seen.push({ method: init.method ?? 'GET', hasQuery: String(input).includes('query=')
      || (init.body ?? '').includes('"query"'), status: response.status,
    type: response.headers.get('content-type'), code: JSON.parse(text).errors?.[0]?.extensions?.code ?? null });
  return response;
};
const sha256 = (text) => createHash('sha256').update(text).digest('hex');
const client = (token) => new ApolloClient({
  cache: new InMemoryCache(),
  link: new PersistedQueryLink({ sha256, useGETForHashedQueries: true }).concat(
    new HttpLink({ uri: url, fetch: logged, headers: { authorization: `Bearer ${token}` } })),
});
const query = gql(`query Me { me { name totalReferrals } ${alias}: __typename }`);
const good = client(bearer);
const first = await good.query({ query, fetchPolicy: 'network-only' });
const second = await good.query({ query, fetchPolicy: 'network-only' });
let refusal = null;
try {
  await client('not-a-token').query({ query, fetchPolicy: 'network-only' });
} catch (error) {
  refusal = { graphql: CombinedGraphQLErrors.is(error), code: error.errors?.[0]?.extensions?.code ?? null,
              name: error.name };
}
console.log(JSON.stringify({ first: first.data, second: second.data, seen, refusal }));
"""


async def test_apollo_clients_persisted_query_link(deployment: Deployment) -> None:
    """Apollo Client 4's HttpLink and PersistedQueryLink (GET for hashed queries, its default
    Accept): unknown hash, then the query, then the hash alone; a 401 reaches it as GraphQL errors."""
    import asyncio

    from tests.support.tools import npm_packages, run_node

    modules = npm_packages(*APOLLO)
    bearer = token(deployment.settings, "affiliate", CHILD)
    alias = f"a{uuid.uuid4().hex}"
    async with uvicorn_serving(deployment.settings, deployment.robust_url, log_level="warning") as url:
        done = await asyncio.to_thread(run_node, APOLLO_CLIENT, modules, f"{url}/graphql", bearer, alias)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["first"]["me"]["name"] and result["first"] == result["second"], result
    gql_type = f"{GQL}; charset=utf-8"
    assert result["seen"][:3] == [
        {"method": "GET", "hasQuery": False, "status": 200, "type": gql_type, "code": "PERSISTED_QUERY_NOT_FOUND"},
        {"method": "POST", "hasQuery": True, "status": 200, "type": gql_type, "code": None},
        {"method": "GET", "hasQuery": False, "status": 200, "type": gql_type, "code": None},
    ], result["seen"]
    assert result["seen"][3]["status"] == 401 and result["seen"][3]["type"] == gql_type
    assert result["refusal"] == {"graphql": True, "code": "UNAUTHENTICATED", "name": "CombinedGraphQLErrors"}, result
