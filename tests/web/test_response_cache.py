"""The response cache: keyed by the viewer, invalidated by a real ETL commit, one computation
for concurrent misses, and answering (uncached) while Redis is down."""

from __future__ import annotations

import asyncio
import logging
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import pytest

from etl.sync import run_cycle
from resolvers.global_ids import global_id
from tests.support.clients import AFFILIATE, CHILD, Clients
from tests.support.deployment import Deployment, build_deployment, drop_deployment, serve, token
from tests.support.factories import Operation
from web.graphiql import DASHBOARD_QUERY

ME = "query Me { me { id: affiliateId totalCpaEarned network { totalNetworkSize } } syncStatus { dataAsOf } }"


def counters(metrics: str) -> tuple[float, float]:
    values = dict(line.rsplit(" ", 1) for line in metrics.splitlines() if line.startswith("fature_cache_"))
    return float(values["fature_cache_hits_total"]), float(values["fature_cache_misses_total"])


async def test_keyed_by_viewer(secure: Clients) -> None:
    one, two = secure.headers("affiliate", AFFILIATE), secure.headers("affiliate", CHILD)
    first = await secure.post(one, ME)
    second = await secure.post(two, ME)
    assert first.json()["data"]["me"]["id"] == "301" and second.json()["data"]["me"]["id"] == "326"
    with secure.api.queries() as seen:
        again = [await secure.post(one, ME), await secure.post(two, ME)]
    assert seen == []  # both from the cache, each its own answer
    assert [r.json()["data"]["me"]["id"] for r in again] == ["301", "326"]
    assert again[0].json() == first.json()
    as_of = first.json()["extensions"]["asOf"]
    assert as_of and first.json()["data"]["syncStatus"]["dataAsOf"] == as_of


async def test_concurrent_misses_compute_once(deployment: Deployment) -> None:
    async with serve(deployment, role=None, cache_enabled=True) as api:
        headers = {"authorization": f"Bearer {token(deployment.settings, 'analyst')}"}
        payload = {"query": DASHBOARD_QUERY, "variables": {"id": "341"}}
        warm = {"query": DASHBOARD_QUERY, "variables": {"id": "1"}}
        await api.client.post("/graphql", json=warm, headers=headers)  # the pool's first connection
        with api.queries() as seen:
            answers = await asyncio.gather(*(api.client.post("/graphql", json=payload, headers=headers)
                                             for _ in range(12)))
        assert len({a.text for a in answers}) == 1 and answers[0].json()["data"]["affiliate"]["id"] == global_id("Affiliate", 341)
        assert len(seen) == 1, seen  # one (compiled) dashboard's statement, not twelve
        hits, misses = counters((await api.client.get("/metrics")).text)
        assert misses == 1 + 1 and hits == 11


@pytest.fixture
async def own_deployment(robust_template: str) -> AsyncIterator[Deployment]:
    built = await build_deployment(robust_template)
    yield built
    await drop_deployment(built)


async def test_an_etl_commit_invalidates(own_deployment: Deployment) -> None:
    deployment = own_deployment
    async with serve(deployment, role=None, cache_enabled=True) as api:
        headers = {"authorization": f"Bearer {token(deployment.settings, 'affiliate', 101)}"}
        query = {"query": "{ me { totalDeposits network { levels { deposits } } } }"}
        before = (await api.client.post("/graphql", json=query, headers=headers)).json()
        assert before["data"]["me"]["totalDeposits"] == "70.00"
        with api.queries() as seen:
            assert (await api.client.post("/graphql", json=query, headers=headers)).json() == before
        assert seen == []
        op = await Operation.open(deployment.operation_url)
        try:
            now = datetime.now(UTC).isoformat()
            await op.deposit(103, "30.00", "2025-03-06 10:00Z", updated=now)  # a late approval
        finally:
            await op.close()
        result = await run_cycle(deployment.settings, deployment.robust_url, deployment.operation_url)
        assert result.status == "success"
        after = (await api.client.post("/graphql", json=query, headers=headers)).json()
        assert after["data"]["me"]["totalDeposits"] == "100.00"  # never older than the commit
        assert after["extensions"]["asOf"] >= before["extensions"]["asOf"]
        assert api.app.state.api.freshness.snapshot.generation == result.run_id


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ThrowawayRedis:
    """A private redis-server (never the shared one), started and killed by the test."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed"
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--daemonize", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.1).close()
                return
            except OSError:
                import time
                time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(5)
            self.process = None


@pytest.fixture
def throwaway_redis() -> Iterator[ThrowawayRedis]:
    redis = ThrowawayRedis()
    redis.start()
    yield redis
    redis.stop()


async def test_redis_down_answers_uncached_and_recovers(
    deployment: Deployment, throwaway_redis: ThrowawayRedis, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"redis://127.0.0.1:{throwaway_redis.port}/0"
    async with serve(deployment, role=None, cache_enabled=True, redis_url=url, cache_retry_seconds=0.3) as api:
        headers = {"authorization": f"Bearer {token(deployment.settings, 'affiliate', AFFILIATE)}"}
        expected = (await api.client.post("/graphql", json={"query": ME}, headers=headers)).json()
        with api.queries() as seen:
            assert (await api.client.post("/graphql", json={"query": ME}, headers=headers)).json() == expected
        assert seen == []  # served from Redis

        throwaway_redis.stop()
        with caplog.at_level(logging.WARNING, logger="fature.api"):
            for _ in range(5):
                response = await api.client.post("/graphql", json={"query": ME}, headers=headers)
                assert response.status_code == 200 and response.json() == expected
                await asyncio.sleep(0.1)
        down = [r for r in caplog.records if "response cache unavailable" in r.getMessage()]
        assert len(down) == 1  # logged once, not per request

        throwaway_redis.start()
        await asyncio.sleep(0.4)
        await api.client.post("/graphql", json={"query": ME}, headers=headers)  # refills the cache
        with api.queries() as seen:
            assert (await api.client.post("/graphql", json={"query": ME}, headers=headers)).json() == expected
        assert seen == []
        assert any("available again" in r.getMessage() for r in caplog.records)


MANIFEST_ID = __import__("json").loads(
    (__import__("pathlib").Path(__file__).resolve().parents[2] / "web" / "documents" / "manifest.json").read_text()
)["operations"][0]["id"]


@pytest.mark.parametrize("accept", ["application/json", "application/graphql-response+json"])
async def test_a_cache_hit_short_way_answers_the_views_bytes(deployment: Deployment, accept: str) -> None:
    """A cache hit answered by the short way (web/graphql.py: stored JSON spliced, no strawberry
    view) is the view's answer byte for byte, headers included: for a document sent in full,
    by its APQ hash, by a trusted document's id, for each role; a miss, a batch and a refused
    body still go the view's way."""
    documents = [
        {"query": DASHBOARD_QUERY, "variables": {"id": "300"}, "operationName": "Dashboard"},
        {"query": ME},
        {"variables": {"id": "300"}, "operationName": "Dashboard",
         "extensions": {"persistedQuery": {"version": 1, "sha256Hash": MANIFEST_ID}}},
        {"query": '{ affiliate(id: "301") { name totalCpaEarned } }'},  # a downline, for an affiliate
    ]
    manifest = __import__("pathlib").Path(__file__).resolve().parents[2] / "web" / "documents" / "manifest.json"
    common = {"cache_enabled": True, "trusted_documents_path": manifest}
    async with serve(deployment, role=None, fast_execution=True, **common) as short, \
            serve(deployment, role=None, fast_execution=False, **common) as view:
        for role, affiliate in (("admin", None), ("analyst", None), ("affiliate", 300)):
            headers = {"authorization": f"Bearer {token(deployment.settings, role, affiliate)}", "accept": accept}
            for body in documents:
                answers = []
                for api in (short, view):
                    first = await api.client.post("/graphql", json=body, headers=headers)
                    second = await api.client.post("/graphql", json=body, headers=headers)
                    assert first.status_code == second.status_code == 200, second.text
                    assert first.content == second.content
                    answers.append((second.status_code, second.content,
                                    [h for h in second.headers.items() if h[0] != "x-request-id"]))
                assert answers[0] == answers[1], (role, body)
        hits, misses = counters((await short.client.get("/metrics")).text)
        assert (hits, misses) == counters((await view.client.get("/metrics")).text)
        # Each lookup counted once, the same on both ways (the dashboard by its trusted id shares
        # the entry of the same document sent in full: a hit from the first request).
        assert hits + misses == 2 * 3 * len(documents) and hits == 3 * len(documents) + 3
        # Not from the cache: a batch and a broken body are the view's answers.
        headers = {"authorization": f"Bearer {token(deployment.settings, 'admin')}"}
        batch = await short.client.post("/graphql", json=[documents[0], documents[1]], headers=headers)
        assert batch.status_code == 200 and len(batch.json()) == 2
        broken = await short.client.post("/graphql", content=b"{not json", headers={
            **headers, "content-type": "application/json"})
        assert broken.status_code == 400 and broken.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
