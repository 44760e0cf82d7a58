"""The compiled path (schema/compiled.py, resolvers/prefetch.py) answers exactly what the general
path answers, byte for byte: every registered document and the variants below, for every role,
on the found, null, downline and error paths; it sends one SQL statement where it answers, and
leaves everything it does not cover to the general path."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from resolvers.global_ids import global_id
from schema.compiled import plan_for
from schema.documents import parsed_document
from schema.root import schema
from tests.support.deployment import Api, Deployment, serve, token
from web.graphiql import DASHBOARD_QUERY

MANIFEST = Path(__file__).resolve().parents[2] / "web" / "documents" / "manifest.json"
REGISTERED = [(o["name"], o["body"]) for o in json.loads(MANIFEST.read_text())["operations"]]

HEAD = """id affiliateId name email phone status totalReferrals totalValidatedReferrals totalDeposits
  totalWithdrawals totalBets totalGgr totalCpaEarned totalRevEarned totalNetworkSize rankCpa rankReferrals
  registeredAt"""
VARIANTS = f"""
query Variants($id: ID!, $first: Int, $after: String, $level: Int, $status: ReferralStatus,
               $from: Date, $to: Date, $last: Int, $period: PeriodType!) {{
  __typename
  a: affiliate(id: $id) {{
    __typename ...Head
    network {{ __typename totalNetworkSize levels {{ ...Level }} }}
    weekly: summaries(period: WEEKLY, last: 3) {{
      periodType periodStart levels {{ level newReferrals deposits bets ggr cpa rev }} }}
    ranged: summaries(period: $period, from: $from, to: $to, last: $last) {{
      periodStart cpaEarned revEarned validatedReferrals newReferrals }}
    referrals(first: $first, after: $after, level: $level, status: $status) {{
      __typename totalCount
      nodes {{ id referredUserId level referralDate status validationDate totalDeposits totalBets cpaAmount }}
      pageInfo {{ hasNextPage hasPreviousPage startCursor endCursor }}
      edges {{ cursor node {{ ... on Referral {{ level }} }} }} }}
    all: referrals {{ totalCount edges {{ node {{ referredUserId }} }} }}
  }}
  syncStatus {{ ...Sync }}
}}
fragment Head on Affiliate {{ {HEAD} }}
fragment Level on NetworkLevel {{ level count deposits bets ggr cpa rev }}
fragment Sync on SyncStatus {{
  dataAsOf
  lastRun {{ id runId mode trigger status startedAt finishedAt sourceAsOf affiliatesTouched error }}
  lastSuccessfulRun {{ id runId }} runsInProgress {{ id }} }}
"""
ME = f"query Me {{ me {{ {HEAD} network {{ levels {{ level count cpa }} }} }} syncStatus {{ dataAsOf }} }}"
SYNC_ONLY = "{ syncStatus { dataAsOf lastSuccessfulRun { runId sourceAsOf } } }"

DOCUMENTS: list[tuple[str, str, list[dict[str, Any]]]] = [
    *[(name, body, [{"id": "300"}, {"id": "301"}, {"id": "357"}, {"id": "999999"},
                    {"id": global_id("Affiliate", 300)}, {"id": "abc"}, {"id": "0"}])
      for name, body in REGISTERED],
    ("Variants", VARIANTS, [
        {"id": "300", "period": "DAILY"},
        {"id": "300", "period": "MONTHLY", "first": 3, "level": 2, "last": 2},
        {"id": "300", "period": "WEEKLY", "first": 2, "status": "VALIDATED", "from": "2020-01-01",
         "to": "2030-01-01"},
        {"id": "300", "period": "YEARLY", "first": 0, "status": "PENDING", "level": 1},
        {"id": "301", "period": "DAILY", "first": 100},
        {"id": "999999", "period": "DAILY"},
        # Refused by the resolvers: the general path's errors, the same on both.
        {"id": "300", "period": "DAILY", "last": 0},
        {"id": "300", "period": "DAILY", "first": 101},
        {"id": "300", "period": "DAILY", "after": "bad"},
        {"id": "300", "period": "DAILY", "level": 6},
        {"id": "300", "period": "DAILY", "from": "2030-01-01", "to": "2020-01-01"},
        # Variables that do not coerce: a request error.
        {"id": "300", "period": "HOURLY"},
        {"id": "300"},
    ]),
    ("Me", ME, [{}]),
    (None, SYNC_ONLY, [{}]),
]
# (role, the token's affiliate)
VIEWERS = [("admin", None), ("analyst", None), ("affiliate", 300), ("affiliate", 301)]


@asynccontextmanager
async def both(deployment: Deployment) -> AsyncIterator[tuple[Api, Api]]:
    async with serve(deployment, compiled_execution=True) as on, serve(deployment, compiled_execution=False) as off:
        yield on, off


async def post(api: Api, headers: dict[str, str], name: str | None, body: str, variables: dict[str, Any]
               ) -> tuple[int, bytes, list[str]]:
    payload: dict[str, Any] = {"query": body, "variables": variables}
    if name is not None:
        payload["operationName"] = name
    with api.queries() as seen:
        response = await api.client.post("/graphql", json=payload, headers=headers)
    return response.status_code, response.content, seen


def covered(role: str, me: int | None, name: str | None, variables: dict[str, Any], body: bytes) -> bool:
    """Whether the compiled path is expected to answer: a viewer reading the affiliate in full,
    arguments the resolvers accept, variables that coerce."""
    answer = json.loads(body)
    if "errors" in answer:
        return False
    if name in ("Me", None):
        return True
    target = variables.get("id")
    if target == global_id("Affiliate", 300):
        target = "300"
    return role != "affiliate" or target == str(me)


async def test_every_document_answers_the_same_bytes(deployment: Deployment) -> None:
    compiled_answers = 0
    async with both(deployment) as (on, off):
        for role, me in VIEWERS:
            headers = {"authorization": f"Bearer {token(deployment.settings, role, me)}"}
            for name, body, variable_sets in DOCUMENTS:
                for variables in variable_sets:
                    expected = await post(off, headers, name, body, variables)
                    # The first of a document per viewer's rules validates on the general path.
                    await post(on, headers, name, body, variables)
                    status, content, seen = await post(on, headers, name, body, variables)
                    where = (role, me, name, variables)
                    assert (status, content) == expected[:2], where
                    if covered(role, me, name, variables, content):
                        assert len(seen) == 1 and seen[0].startswith("SELECT r.id AS run_id"), (where, seen)
                        compiled_answers += 1
                    else:
                        assert not any(s.startswith("SELECT r.id AS run_id") for s in seen[1:]), where
    assert compiled_answers >= 30  # the comparison is about compiled answers, not only fallbacks


async def test_the_dashboard_is_one_statement_and_five_without(deployment: Deployment) -> None:
    async with both(deployment) as (on, off):
        for api, statements in ((on, 1), (off, 5)):
            await api.data(DASHBOARD_QUERY, {"id": "300"})
            with api.queries() as seen:
                await api.data(DASHBOARD_QUERY, {"id": "300"})
            assert len(seen) == statements, seen


async def test_an_affiliate_reading_its_downline_takes_the_general_path(deployment: Deployment) -> None:
    async with serve(deployment, role=None, compiled_execution=True) as on:
        headers = {"authorization": f"Bearer {token(deployment.settings, 'affiliate', 300)}"}
        for _ in range(2):
            status, content, seen = await post(on, headers, "Dashboard", DASHBOARD_QUERY, {"id": "301"})
        assert status == 200 and json.loads(content)["data"]["affiliate"]["name"] != "", content
        assert len(seen) > 1 and not seen[0].startswith("SELECT r.id AS run_id"), seen


@pytest.mark.parametrize("document", [
    '{ affiliate(id: "300") { name transactions(first: 1) { totalCount } } }',  # not covered
    '{ affiliate(id: "300") { name @include(if: true) } }',  # a directive
    '{ affiliates(first: 2) { totalCount } }',  # another root field
    '{ a: affiliate(id: "300") { name } b: affiliate(id: "301") { name } }',  # two affiliates
    '{ affiliate(id: "300") { referrals { nodes { referredAffiliate { name } } } } }',  # nested affiliate
    '{ affiliate(id: "300") { name name: status } }',  # one response name twice
    'mutation { validateCpa { runId } }',
    '{ __schema { queryType { name } } }',
])
def test_documents_the_compiler_does_not_cover_have_no_plan(document: str) -> None:
    assert plan_for(schema, parsed_document(document), None) is None


@pytest.mark.parametrize("document", [DASHBOARD_QUERY, VARIANTS, ME, SYNC_ONLY])
def test_the_covered_documents_have_a_plan(document: str) -> None:
    entry = parsed_document(document)
    names = [None] if document is SYNC_ONLY else [d.name.value for d in entry.document.definitions
                                                      if getattr(d, "operation", None) is not None]
    assert plan_for(schema, entry, names[0]) is not None


async def test_the_setting_turns_it_off(deployment: Deployment) -> None:
    async with serve(deployment, compiled_execution=False) as off:
        for _ in range(2):
            with off.queries() as seen:
                await off.data(DASHBOARD_QUERY, {"id": "300"})
        assert not any(s.startswith("SELECT r.id AS run_id") for s in seen)


async def test_a_get_request_is_compiled_too_with_the_same_bytes(deployment: Deployment) -> None:
    params = {"query": DASHBOARD_QUERY, "variables": json.dumps({"id": "300"}), "operationName": "Dashboard"}
    async with both(deployment) as (on, off):
        answers = []
        for api in (on, off):
            await api.client.get("/graphql", params=params)
            with api.queries() as seen:
                response = await api.client.get("/graphql", params=params)
            answers.append((response.status_code, response.content))
            assert len(seen) == (1 if api is on else 5), seen
        assert answers[0] == answers[1] and answers[0][0] == 200
