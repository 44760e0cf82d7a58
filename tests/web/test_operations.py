"""/metrics, /healthz, /readyz (flipping with the database), request ids and JSON logs
without secrets."""

from __future__ import annotations

import io
import json
import logging
from urllib.parse import urlsplit

from tests.support.clients import AFFILIATE, Clients
from tests.support.databases import ADMIN_URL
from tests.support.deployment import Deployment, serve, token
from tests.support.proxy import Proxy
from web.access_log import configure_logging

METRICS = (
    "fature_requests_total", "fature_request_duration_seconds_bucket", "fature_cache_hits_total",
    "fature_cache_misses_total", "fature_rate_limited_total", "fature_auth_failures_total",
    "fature_etl_runs_total", "fature_etl_rows_written_total", "fature_etl_run_duration_seconds",
    "fature_data_freshness_seconds", 'fature_db_pool_connections{state="checked_out"}',
)


async def test_metrics_are_exposed(secure: Clients) -> None:
    headers = secure.headers("affiliate", AFFILIATE)
    await secure.post(headers, "query Dashboard { me { id } }")
    await secure.api.client.get("/api/v1/affiliates/301", headers=headers)
    text = (await secure.api.client.get("/metrics")).text
    for name in METRICS:
        assert name in text, name
    assert 'fature_requests_total{operation="Dashboard",status="200"}' in text
    assert 'fature_requests_total{operation="RestAffiliate",status="200"}' in text
    freshness = next(line for line in text.splitlines() if line.startswith("fature_data_freshness_seconds "))
    assert float(freshness.split()[1]) > 0


async def test_operation_labels_are_bounded(secure: Clients) -> None:
    headers = secure.headers("admin")
    await secure.post(headers, "query Evil_name_with_a_very_long_suffix_to_be_sure_it_is_cut_off_somewhere_x1234567 "
                               "{ me { id } }")
    text = (await secure.api.client.get("/metrics")).text
    assert 'operation="invalid"' in text


async def test_etl_metrics_follow_commits(deployment: Deployment) -> None:
    async with serve(deployment, role=None) as api:
        state = api.app.state.api
        await state.freshness.refresh()
        # the deployment's run happened before this app started: counted from the next one on
        assert state.freshness.snapshot.generation >= 1
        assert state.freshness.snapshot.as_of is not None


async def test_readiness_flips_with_the_database(deployment: Deployment) -> None:
    proxy = Proxy()
    await proxy.start()
    name = deployment.robust_url.rsplit("/", 1)[1]
    user = urlsplit(ADMIN_URL).username or "postgres"
    through = Deployment(f"postgresql://{user}@127.0.0.1:{proxy.port}/{name}", deployment.operation_url, deployment.settings)
    async with serve(through, role=None, ready_max_etl_age_seconds=10**9) as api:
        ready = await api.client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["status"] == "ready"
        await proxy.stop()
        down = await api.client.get("/readyz")
        assert down.status_code == 503 and down.json()["checks"]["database"] == "unavailable"
        assert (await api.client.get("/healthz")).status_code == 200  # alive all the same
        await proxy.start()
        assert (await api.client.get("/readyz")).status_code == 200
        await proxy.stop()


async def test_readiness_needs_a_recent_etl(deployment: Deployment) -> None:
    async with serve(deployment, role=None, ready_max_etl_age_seconds=1) as api:
        import asyncio

        await asyncio.sleep(1.1)
        stale = await api.client.get("/readyz")
        assert stale.status_code == 503 and "older than 1 s" in stale.json()["reasons"][0]


async def test_json_logs_carry_request_ids_and_no_secrets(secure: Clients) -> None:
    stream = io.StringIO()
    handler = configure_logging(logging.INFO, stream)
    try:
        bearer = token(secure.settings, "affiliate", AFFILIATE)
        response = await secure.api.client.post(
            "/graphql", json={"query": "query Mine { me { id email } }"},
            headers={"authorization": f"Bearer {bearer}", "x-request-id": "req-123"})
        assert response.headers["x-request-id"] == "req-123"
        await secure.api.client.post("/graphql", json={"query": "{ me { id } }"},
                                     headers={"authorization": f"Bearer {bearer}x"})
        logging.getLogger("fature.api").warning("connecting to postgresql://u:hunter2@db/x with Bearer %s", bearer)
    finally:
        logging.getLogger("fature").removeHandler(handler)
        logging.getLogger("fature").propagate = True
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    access = [entry for entry in lines if entry["logger"] == "fature.access"]
    assert access[0]["request_id"] == "req-123" and access[0]["operation"] == "Mine"
    assert access[0]["status"] == 200 and access[0]["role"] == "affiliate"
    assert access[1]["status"] == 401 and len(access[1]["request_id"]) == 32
    text = stream.getvalue()
    assert bearer not in text and bearer[:40] not in text and "hunter2" not in text
    assert "user301@example.com" not in text
