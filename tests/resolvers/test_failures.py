"""A database outage is a clear error and the server recovers; unexpected errors are masked."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

import pytest

from schema.affiliate import Affiliate
from tests.support.databases import ADMIN_URL
from tests.support.deployment import Api, Deployment, serve
from tests.support.proxy import Proxy

QUERY = '{ affiliate(id: "101") { totalDeposits network { levels { count } } } }'


async def test_database_down_then_back(deployment: Deployment, caplog: pytest.LogCaptureFixture) -> None:
    proxy = Proxy()
    await proxy.start()
    name = deployment.robust_url.rsplit("/", 1)[1]
    user = urlsplit(ADMIN_URL).username or "postgres"
    through_proxy = Deployment(f"postgresql://{user}@127.0.0.1:{proxy.port}/{name}", deployment.operation_url,
                          deployment.settings)
    async with serve(through_proxy) as api:
        healthy = await api.data(QUERY)
        assert healthy["affiliate"]["totalDeposits"] == "70.00"

        await proxy.stop()
        for _ in range(2):  # pooled connections died, new ones are refused
            response = await api.client.post("/graphql", json={"query": QUERY})
            assert response.status_code == 200
            body = response.json()
            assert body["data"] == {"affiliate": None}
            error = body["errors"][0]
            assert error["extensions"]["code"] == "SERVICE_UNAVAILABLE"
            assert error["message"] == "The database is unavailable right now; try again shortly."
            assert str(proxy.port) not in response.text and "asyncpg" not in response.text
        rest = await api.client.get("/api/v1/affiliates/101")
        assert rest.status_code == 503
        assert rest.json()["error"]["code"] == "SERVICE_UNAVAILABLE"
        assert (await api.client.get("/healthz")).status_code == 200
        assert (await api.client.get("/graphql", headers={"accept": "text/html"})).status_code == 200

        await proxy.start()
        assert await api.data(QUERY) == healthy
        assert (await api.client.get("/api/v1/affiliates/101")).status_code == 200
        await proxy.stop()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_unexpected_errors_are_masked_and_logged(
    api: Api, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(cls: type, row: object) -> Affiliate:
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(Affiliate, "from_row", classmethod(broken))
    with caplog.at_level(logging.ERROR, logger="fature.api"):
        response = await api.client.post("/graphql", json={"query": '{ affiliate(id: "101") { id } }'})
        rest = await api.client.get("/api/v1/affiliates/101")
    assert response.status_code == 200
    error = response.json()["errors"][0]
    assert error == {"message": "Unexpected error.", "locations": [{"line": 1, "column": 3}],
                     "path": ["affiliate"], "extensions": {"code": "INTERNAL_SERVER_ERROR"}}
    assert "secret" not in response.text and "secret" not in rest.text
    assert rest.status_code == 500 and rest.json()["error"]["message"] == "Unexpected error."
    assert any("secret internal detail" in r.getMessage() for r in caplog.records)
