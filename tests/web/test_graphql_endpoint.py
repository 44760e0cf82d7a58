"""Over real HTTP: a GraphQL client runs the dashboard query against uvicorn; GraphiQL,
GET queries, health and the lifespan's scheduler."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest
import uvicorn
from gql import Client, gql
from gql.transport.httpx import HTTPXAsyncTransport

import app as app_module
from app import create_app
from tests.support.deployment import Api, Deployment, rows, serve, token
from web.graphiql import DASHBOARD_QUERY, EXAMPLE_ID


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
async def server(deployment: Deployment) -> AsyncIterator[str]:
    port = free_port()
    app = create_app(deployment.settings, robust_url=deployment.robust_url, start_scheduler=False)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    uv = uvicorn.Server(config)
    task = asyncio.create_task(uv.serve())
    while not uv.started:
        assert not task.done(), "uvicorn did not start"
        await asyncio.sleep(0.01)
    yield f"http://127.0.0.1:{port}"
    uv.should_exit = True
    await task


async def test_gql_client_runs_the_dashboard_over_http(server: str, deployment: Deployment) -> None:
    transport = HTTPXAsyncTransport(url=f"{server}/graphql",
                                    headers={"authorization": f"Bearer {token(deployment.settings, 'analyst')}"})
    async with Client(transport=transport, fetch_schema_from_transport=True) as session:
        request = gql(DASHBOARD_QUERY)
        request.variable_values = {"id": "300"}
        result = await session.execute(request)
    affiliate = result["affiliate"]
    row = (await rows(deployment.robust_url, "SELECT * FROM affiliates WHERE affiliate_id = 300"))[0]
    assert affiliate["totalCpaEarned"] == f"{row['total_cpa_earned']:.2f}"
    assert affiliate["totalRevEarned"] == f"{row['total_rev_earned']:.2f}"
    assert affiliate["network"]["totalNetworkSize"] == row["total_network_size"] == 60
    assert len(affiliate["network"]["levels"]) == 5
    assert 0 < len(affiliate["summaries"]) <= 30
    assert len(affiliate["referrals"]["edges"]) == 10 and affiliate["referrals"]["totalCount"] == 60
    assert result["syncStatus"]["dataAsOf"] is not None


async def test_graphiql_has_the_dashboard_preloaded(api: Api) -> None:
    page = await api.client.get("/graphql", headers={"accept": "text/html"})
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "query Dashboard($id: ID!)" in page.text
    # A placeholder fills the variables: the page is open without a token, so it holds no data.
    assert f'\\"id\\":\\"{EXAMPLE_ID}\\"' in page.text
    assert "://" not in page.text  # every asset is the server's own (tests/web/test_graphiql_assets.py)


async def test_get_queries_health_and_json(api: Api) -> None:
    response = await api.client.get("/graphql", params={"query": '{ affiliate(id: "101") { totalGgr } }'})
    assert response.status_code == 200 and response.json()["data"] == {"affiliate": {"totalGgr": "115.00"}}
    assert response.json()["extensions"]["asOf"]  # the data's as-of instant, for the portals
    mutation = await api.client.get("/graphql", params={"query": 'mutation { validateCpa(affiliateId: "1") { affiliateId } }'})
    assert mutation.status_code == 405 and mutation.headers["allow"] == "POST"  # no mutations over GET
    assert mutation.json()["errors"][0]["extensions"]["code"] == "METHOD_NOT_ALLOWED"
    health = await api.client.get("/healthz")
    assert (health.status_code, health.json()) == (200, {"status": "ok"})


async def test_lifespan_starts_and_stops_the_scheduler(deployment: Deployment, monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[str] = []

    class FakeScheduler:
        async def shutdown(self) -> None:
            events.append("shutdown")

    def start_scheduler(settings: object, robust_url: str, operation_url: str) -> FakeScheduler:
        events.append(f"start {robust_url == deployment.robust_url} {operation_url == deployment.operation_url}")
        return FakeScheduler()

    monkeypatch.setattr(app_module, "start_etl_scheduler", start_scheduler)
    async with serve(deployment) as api:
        assert (await api.client.get("/healthz")).status_code == 200
    assert events == []  # start_scheduler=False in serve()

    app = create_app(deployment.settings, robust_url=deployment.robust_url, start_scheduler=True)
    async with app.router.lifespan_context(app):
        assert events == ["start True True"]
    assert events == ["start True True", "shutdown"]
