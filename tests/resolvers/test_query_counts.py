"""The number of SQL statements is fixed by the query's shape, never by the page size."""

from __future__ import annotations

import pytest

from tests.support.deployment import Api, Deployment, serve
from web.graphiql import DASHBOARD_QUERY

LIST = """query($n: Int) { affiliates(first: $n) { edges { node {
  network { levels { level count } } summaries(period: MONTHLY) { cpaEarned } } } } }"""

RICH_LIST = """query($n: Int) { affiliates(first: $n, orderBy: {field: TOTAL_NETWORK_SIZE}) {
  totalCount edges { node { id upline { id name } network { totalNetworkSize }
    referrals(first: 3) { totalCount nodes { referredUserId referredAffiliate { name } } }
    pending: referrals(first: 2, status: PENDING) { totalCount nodes { level } }
    cpaValidations(first: 2) { totalCount nodes { cpaAmount affiliate { id } } }
    transactions(first: 2, type: DEPOSIT) { totalCount nodes { amount } }
    summaries(period: WEEKLY, last: 2) { cpaEarned levels { rev } } } } } }"""


async def count(api: Api, query: str, variables: dict | None = None) -> list[str]:
    await api.data(query, variables)  # warm: the pool's first connections, caches
    with api.queries() as seen:
        await api.data(query, variables)
    return seen


@pytest.mark.parametrize("page", [5, 50, 100])
async def test_list_with_levels_and_summaries_is_three_statements(api: Api, page: int) -> None:
    seen = await count(api, LIST, {"n": page})
    assert len(seen) == 3, seen  # the page, the networks, the summaries


@pytest.mark.parametrize("page", [5, 50])
async def test_rich_list_is_a_fixed_number_of_statements(api: Api, page: int) -> None:
    seen = await count(api, RICH_LIST, {"n": page})
    # page + count, upline ids, networks, 2 referral pages + the PENDING count, validations
    # page + count, transactions page + count, summaries, and ONE batch of affiliates by id
    # (uplines and referred affiliates together; the page's own rows are primed). The
    # referral totalCount without a status filter comes from the networks, not a COUNT.
    assert len(seen) == 13, "\n".join(seen)


async def test_dashboard_is_one_statement(api: Api) -> None:
    seen = await count(api, DASHBOARD_QUERY, {"id": "300"})
    assert len(seen) == 1, seen  # compiled (schema/compiled.py): everything in one statement


async def test_dashboard_is_five_statements_on_the_general_path(deployment: Deployment) -> None:
    async with serve(deployment, compiled_execution=False) as general:
        seen = await count(general, DASHBOARD_QUERY, {"id": "300"})
    assert len(seen) == 5, seen  # sync status, affiliate, network, summaries, referrals
