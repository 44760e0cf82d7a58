"""The hot path's shortcuts change no answer: on ETL-built data, every query below answers the
same JSON with them (the execution context's short ways, reads straight on asyncpg) and
without them (graphql-core's execution, every query through SQLAlchemy); and the direct
read path returns the same rows, of the same Python types, as SQLAlchemy does."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from sqlalchemy import text

from db.reader import Database
from resolvers.loaders.affiliate import _BY_ID, _UPLINE
from resolvers.loaders.network import _NETWORK
from resolvers.loaders.referral import ReferralArgs, ReferralPageByAffiliateLoader
from resolvers.loaders.summary import _query
from resolvers.loaders.validation import _BY_ID as _VALIDATIONS_BY_ID
from resolvers.sync import _RUNS
from schema.execution import FatureExecutionContext
from tests.support.deployment import Api, Deployment, serve, token
from web.graphiql import DASHBOARD_QUERY

LEVELS = "level count deposits bets ggr cpa rev"
QUERIES: list[tuple[str, dict[str, Any]]] = [
    (DASHBOARD_QUERY, {"id": "300"}),
    (DASHBOARD_QUERY, {"id": "101"}),
    (DASHBOARD_QUERY, {"id": "999999"}),
    ("""{ affiliates(first: 100) { edges { node { id affiliateId name status totalCpaEarned totalRevEarned
        network { levels { """ + LEVELS + """ } } } } } }""", {}),
    ("""query($n: Int) { affiliates(first: $n, orderBy: {field: TOTAL_NETWORK_SIZE}) {
        totalCount pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
        edges { cursor node { id name email phone status totalReferrals totalValidatedReferrals
          totalDeposits totalWithdrawals totalBets totalGgr totalCpaEarned totalRevEarned
          totalNetworkSize rankCpa rankReferrals registeredAt upline { id name }
          referrals(first: 3) { totalCount nodes { referredUserId level referralDate status
            validationDate totalDeposits totalBets cpaAmount referredAffiliate { name } } }
          cpaValidations(first: 2) { totalCount nodes { id cpaAmount cpaStatus validationDate affiliate { id } } }
          transactions(first: 2) { totalCount nodes { amount type transactionDate level } }
          summaries(period: WEEKLY, last: 2) { periodType periodStart cpaEarned
            levels { level newReferrals deposits bets ggr cpa rev } } } } } }""", {"n": 40}),
    ("""{ ranking(metric: VALIDATED_REFERRALS, first: 5) { edges { node { id rankReferrals } } }
        syncStatus { dataAsOf lastRun { id mode trigger status startedAt finishedAt sourceAsOf
          affiliatesTouched error } lastSuccessfulRun { id } runsInProgress { id } } }""", {}),
    ("""{ affiliate(id: "300") { summaries(period: DAILY) { periodStart newReferrals
        validatedReferrals totalDeposits levels { level deposits } } } }""", {}),
    ('{ affiliate(id: "300") { referrals(first: 2, after: "bad") { totalCount } } }', {}),
]


@pytest.mark.parametrize("role", ["admin", "affiliate"])
async def test_every_query_answers_the_same(deployment: Deployment, role: str) -> None:
    """The same answers with the custom executor on and off (FATURE_FAST_EXECUTION)."""
    affiliate = 300 if role == "affiliate" else None
    async with serve(deployment, fast_execution=True, compiled_execution=False) as fast_api, \
            serve(deployment, fast_execution=False, compiled_execution=False) as slow_api:
        assert fast_api.app.state.api.settings.fast_execution is True
        assert slow_api.app.state.api.settings.fast_execution is False
        # ... and every read of the slow one through SQLAlchemy, not straight on asyncpg.
        slow_api.app.state.api.database._compile = lambda query: None
        headers = {"authorization": f"Bearer {token(deployment.settings, role, affiliate)}"}
        for query, variables in QUERIES:
            body = {"query": query, "variables": variables}
            fast = await fast_api.client.post("/graphql", json=body, headers=headers)
            slow = await slow_api.client.post("/graphql", json=body, headers=headers)
            assert fast.status_code == slow.status_code == 200
            assert "data" in fast.json(), (query, fast.json())  # executed: not a request error
            assert fast.json()["data"] == slow.json()["data"], query
            assert fast.json().get("errors") == slow.json().get("errors"), query


async def test_the_setting_turns_the_short_ways_off(deployment: Deployment, monkeypatch: pytest.MonkeyPatch) -> None:
    planned: list[bool] = []
    original = FatureExecutionContext._plan

    def spy(self: FatureExecutionContext, *args: Any) -> Any:
        plan = original(self, *args)
        planned.append(plan is not None)
        return plan

    monkeypatch.setattr(FatureExecutionContext, "_plan", spy)
    for fast in (True, False):
        planned.clear()
        async with serve(deployment, fast_execution=fast, compiled_execution=False) as api:
            assert (await api.data(DASHBOARD_QUERY, {"id": "300"}))["affiliate"] is not None
        assert any(planned) is fast


async def test_direct_reads_equal_sqlalchemy_rows(api: Api) -> None:
    database: Database = api.app.state.api.database
    referrals, params = ReferralPageByAffiliateLoader.query(
        ReferralPageByAffiliateLoader, ReferralArgs(first=5, after=None, level=2))  # type: ignore[arg-type]
    ids = [300, 301, 326, 101, 999999]
    cases = [
        (_RUNS, {}),
        (_BY_ID, {"ids": ids}),
        (_UPLINE, {"ids": ids}),
        (_NETWORK, {"ids": ids}),
        (_query(True, True, False), {"ids": ids, "period": "daily", "start": date(2025, 3, 1),
                                         "end": date(2025, 3, 31)}),
        (_query(False, False, True), {"ids": ids, "period": "weekly", "last": 3}),
        (referrals, {"ids": ids, "limit": 6, **params}),
        (_VALIDATIONS_BY_ID, {"ids": list(range(1, 40))}),
    ]
    for query, values in cases:
        assert database._compile(query) is not None  # it takes the direct path
        direct = await database.fetch(query, values)
        async with database.engine.connect() as conn:
            result = await conn.execute(query, values)
            through_sqlalchemy = result.all()
            columns = list(result.keys())
        assert direct, query.text
        assert [tuple(r) for r in direct] == [tuple(r) for r in through_sqlalchemy]
        for mine, theirs in zip(direct, through_sqlalchemy, strict=True):
            assert [type(v) for v in mine] == [type(v) for v in theirs]
            assert [str(v) for v in mine] == [str(v) for v in theirs]  # Decimal scale, offsets
            assert mine._mapping == dict(theirs._mapping)
            assert all(getattr(mine, c) == getattr(theirs, c) for c in columns)


async def test_a_statement_with_typed_parameters_goes_through_sqlalchemy(api: Api) -> None:
    from sqlalchemy import Integer, bindparam

    database: Database = api.app.state.api.database
    typed = text("SELECT :n + 1 AS m").bindparams(bindparam("n", type_=Integer))
    assert database._compile(typed) is None
    with api.queries() as seen:
        rows = await database.fetch(typed, {"n": 41})
    assert rows[0].m == 42 and rows[0]._mapping == {"m": 42} and len(seen) == 1


async def test_reads_recover_after_the_pool_is_closed(deployment: Deployment) -> None:
    async with serve(deployment) as api:
        assert (await api.data('{ affiliate(id: "300") { affiliateId } }'))["affiliate"]["affiliateId"] == "300"
        await api.app.state.api.database.close()  # as at shutdown; a late read opens a new pool
        assert (await api.data('{ affiliate(id: "300") { affiliateId } }'))["affiliate"]["affiliateId"] == "300"
