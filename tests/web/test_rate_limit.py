"""Rate limits per token (and per IP without one): 429 with Retry-After, then recovery;
shared by every worker through Redis."""

from __future__ import annotations

import asyncio
import uuid

from tests.support.deployment import Deployment, serve, token

QUERY = {"query": '{ affiliate(id: "300") { id } }'}
# A burst window of a few seconds, so that three requests on a loaded machine still fall in it.
LIMITED = {"rate_limit_enabled": True, "rate_limit": "1000/minute", "rate_limit_burst": "3/4 seconds",
           "rate_limit_anonymous": "2/minute"}


async def test_429_with_retry_after_then_recovery(deployment: Deployment) -> None:
    async with serve(deployment, role=None, **LIMITED) as api:
        settings = api.app.state.api.settings
        mine = {"authorization": f"Bearer {token(settings, 'affiliate', 301)}"}
        other = {"authorization": f"Bearer {token(settings, 'affiliate', 326)}"}
        statuses = [(await api.client.post("/graphql", json=QUERY, headers=mine)).status_code for _ in range(3)]
        assert statuses == [200, 200, 200]
        refused = await api.client.post("/graphql", json=QUERY, headers=mine)
        assert refused.status_code == 429
        assert refused.json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
        retry_after = int(refused.headers["retry-after"])
        assert 1 <= retry_after <= 5
        rest = await api.client.get("/api/v1/affiliates/301", headers=mine)
        assert rest.status_code == 429 and rest.json()["error"]["code"] == "RATE_LIMITED"
        assert (await api.client.post("/graphql", json=QUERY, headers=other)).status_code == 200  # per token
        await asyncio.sleep(retry_after + 1)
        assert (await api.client.post("/graphql", json=QUERY, headers=mine)).status_code == 200
        metrics = (await api.client.get("/metrics")).text
        assert 'fature_rate_limited_total{kind="token"} 2.0' in metrics


async def test_anonymous_requests_are_limited_per_ip(deployment: Deployment) -> None:
    async with serve(deployment, role=None, **LIMITED) as api:
        statuses = [(await api.client.post("/graphql", json=QUERY)).status_code for _ in range(3)]
        assert statuses == [401, 401, 429]
        assert (await api.client.get("/healthz")).status_code == 200  # open endpoints are not counted


async def test_limits_are_shared_through_redis(deployment: Deployment) -> None:
    shared = {**LIMITED, "redis_url": "redis://127.0.0.1:6379/0"}
    async with serve(deployment, role=None, **shared) as one, serve(deployment, role=None, **shared) as two:
        headers = {"authorization": f"Bearer {token(deployment.settings, 'admin', subject=uuid.uuid4().hex)}"}
        statuses = [(await api.client.post("/graphql", json=QUERY, headers=headers)).status_code
                    for api in (one, two, one, two)]
        assert statuses == [200, 200, 200, 429]
