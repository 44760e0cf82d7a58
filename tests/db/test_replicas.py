"""Reads on a real streaming replica (tests/support/replica.py: a primary and its hot standby
on their own ports): queries read the replica; an answer's asOf and its cached answers are
the data the replica holds, never the primary's newer run (replay paused); a replica lagging
beyond the threshold or stopped is out of rotation and reads go to the primary without errors
(/readyz and /metrics say so); a mutation's answer reads the primary."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from db import migrate
from db.reader import sql
from tests.db.test_snapshot_reads import commit_now
from tests.support.databases import drop_database, new_operation_database
from tests.support.deployment import Api, Deployment, deploy_into, serve
from tests.support.replica import StreamingPair, streaming_pair
from web.graphiql import DASHBOARD_QUERY

_IN_RECOVERY = sql("SELECT pg_is_in_recovery() AS r")


@pytest.fixture
def pair() -> Iterator[StreamingPair]:
    with streaming_pair() as made:
        made.psql(made.primary_port, "CREATE DATABASE fature")
        yield made


@contextlib.asynccontextmanager
async def deployed_on(pair: StreamingPair) -> AsyncIterator[Deployment]:
    """The test deployment's data, built by the real ETL, in the pair's primary (database
    ``fature``), replayed by the replica before it is handed out."""
    robust_url = pair.url(pair.primary_port, "fature")
    await asyncio.to_thread(migrate.upgrade, robust_url)
    operation_url = await new_operation_database()
    try:
        deployment = await deploy_into(robust_url, operation_url)
        await asyncio.to_thread(pair.wait_caught_up)
        yield deployment
    finally:
        await drop_database(operation_url)


@pytest.fixture
async def on_pair(pair: StreamingPair) -> AsyncIterator[Deployment]:
    async with deployed_on(pair) as built:
        yield built


def replica_settings(pair: StreamingPair, **more: Any) -> dict[str, Any]:
    return {"database_read_urls": pair.url(pair.replica_port, "fature"), "replica_check_seconds": 0.1,
            "freshness_poll_seconds": 0.2, **more}


async def until(condition: Callable[[], bool], seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


class Statements:
    """The statements each node's reader sent while the block ran."""

    def __init__(self, api: Api) -> None:
        nodes = api.app.state.api.nodes
        self.primary: list[str] = []
        self.replica: list[str] = []
        self._pairs = [(nodes.primary.database, self.primary), (nodes.replicas[0].database, self.replica)]

        self._listeners = [(database, self._recorder(seen)) for database, seen in self._pairs]

    @staticmethod
    def _recorder(seen: list[str]) -> Callable[[str], None]:
        def record(statement: str) -> None:
            if "pg_wal_lsn_diff" not in statement:  # the replica checks (db/replicas.py) run meanwhile
                seen.append(statement)
        return record

    def __enter__(self) -> Statements:
        for database, record in self._listeners:
            database.query_listeners.append(record)
        return self

    def __exit__(self, *_: object) -> None:
        for database, record in self._listeners:
            database.query_listeners.remove(record)


def counter(api: Api, name: str, node: str) -> float:
    metric = getattr(api.app.state.api.metrics, name)
    return float(metric.labels(node)._value.get())


async def dashboard(api: Api) -> dict[str, Any]:
    body = await api.graphql(DASHBOARD_QUERY, {"id": "300"})
    assert "errors" not in body, body
    return body


async def test_queries_read_the_replica_and_mutations_the_primary(on_pair: Deployment, pair: StreamingPair) -> None:
    async with serve(on_pair, **replica_settings(pair)) as api:
        replica = api.app.state.api.nodes.replicas[0]
        await until(lambda: replica.in_rotation)
        with Statements(api) as seen:
            body = await dashboard(api)
        assert len(seen.replica) == 1 and seen.primary == [], (seen.primary, seen.replica)  # compiled: one
        assert body["data"]["affiliate"]["name"]
        # The answer's read really ran in recovery (the replica), not on the primary.
        reads = api.app.state.api.nodes.choose().database
        assert reads is replica.database
        assert (await reads.fetch(_IN_RECOVERY))[0].r is True

        primary_answers = counter(api, "node_reads", "primary")
        replica_answers = counter(api, "node_reads", "replica1")
        with Statements(api) as seen:
            await api.graphql('mutation { approveStatement(id: "300:2020-01") { status } }')
        assert seen.replica == []
        assert counter(api, "node_reads", "primary") == primary_answers + 1
        assert counter(api, "node_reads", "replica1") == replica_answers


async def test_as_of_and_the_cache_follow_what_the_replica_replayed(on_pair: Deployment, pair: StreamingPair) -> None:
    async with serve(on_pair, **replica_settings(pair, cache_enabled=True)) as api:
        state = api.app.state.api
        replica = state.nodes.replicas[0]
        await until(lambda: replica.in_rotation)
        before = await dashboard(api)
        old_run = state.freshness.snapshot.generation

        await asyncio.to_thread(pair.pause_replay)
        await asyncio.to_thread(commit_now, on_pair.robust_url)
        await until(lambda: state.freshness.snapshot.generation > old_run)  # the primary's NOTIFY
        new = state.freshness.snapshot
        assert replica.in_rotation and replica.run_id == old_run
        # Cached answer and a freshly computed one alike: the replica's data and its asOf.
        assert await dashboard(api) == before
        other = await api.graphql(DASHBOARD_QUERY, {"id": "301"})
        assert other["extensions"]["asOf"] == before["extensions"]["asOf"] != new.as_of_text

        await asyncio.to_thread(pair.resume_replay)
        await until(lambda: replica.run_id == new.generation)
        after = await dashboard(api)
        assert after["extensions"]["asOf"] == new.as_of_text
        assert float(after["data"]["affiliate"]["totalGgr"]) == float(before["data"]["affiliate"]["totalGgr"]) + 1000
        assert counter(api, "node_reads", "primary") == 0  # every answer read the replica


async def test_a_lagging_replica_leaves_the_rotation(on_pair: Deployment, pair: StreamingPair) -> None:
    async with serve(on_pair, **replica_settings(pair, replica_max_lag_seconds=1.0)) as api:
        state = api.app.state.api
        replica = state.nodes.replicas[0]
        await until(lambda: replica.in_rotation)
        await asyncio.to_thread(pair.pause_replay)
        await asyncio.to_thread(commit_now, on_pair.robust_url)
        await until(lambda: not replica.in_rotation, 10)
        assert replica.up and replica.lag_seconds > 1.0 and replica.reason == "lag above 1 s"

        with Statements(api) as seen:
            body = await dashboard(api)
        assert seen.replica == [] and len(seen.primary) == 1  # the compiled dashboard: one statement
        assert body["extensions"]["asOf"] == state.freshness.snapshot.as_of_text  # the primary's newest

        ready = await api.client.get("/readyz")
        assert ready.status_code == 200, ready.text
        checks = ready.json()["checks"]
        assert checks["replicas_in_rotation"] == 0
        assert checks["replicas"]["replica1"]["in_rotation"] is False
        assert checks["replicas"]["replica1"]["lag_seconds"] > 1.0
        metrics = (await api.client.get("/metrics")).text
        assert 'fature_replica_in_rotation{node="replica1"} 0.0' in metrics
        lag = next(line for line in metrics.splitlines() if line.startswith('fature_replica_lag_seconds{node="replica1"}'))
        assert float(lag.split()[-1]) > 1.0

        await asyncio.to_thread(pair.resume_replay)
        await until(lambda: replica.in_rotation, 10)
        assert 'fature_replica_in_rotation{node="replica1"} 1.0' in (await api.client.get("/metrics")).text


async def test_a_stopped_replica_moves_reads_to_the_primary_without_errors(
    on_pair: Deployment, pair: StreamingPair
) -> None:
    # A check period long enough that the first answers still go to the replica after it stops.
    async with serve(on_pair, **replica_settings(pair, replica_check_seconds=30)) as api:
        state = api.app.state.api
        replica = state.nodes.replicas[0]
        await until(lambda: replica.in_rotation)
        expected = await dashboard(api)
        await asyncio.to_thread(pair.stop_replica)
        for _ in range(3):
            assert await dashboard(api) == expected  # no error: computed again on the primary
        assert not replica.in_rotation
        assert counter(api, "read_retries", "replica1") == 1
        ready = await api.client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["checks"]["replicas"]["replica1"]["up"] is False



@pytest.fixture
def conflicting_pair() -> Iterator[StreamingPair]:
    """A replica that cancels a conflicting read at once (no standby delay, no feedback)."""
    with streaming_pair("max_standby_streaming_delay = 0\nhot_standby_feedback = off") as made:
        made.psql(made.primary_port, "CREATE DATABASE fature")
        yield made


async def test_an_answer_cancelled_by_recovery_is_computed_again_on_the_primary(
    conflicting_pair: StreamingPair,
) -> None:
    """PostgreSQL 15 ends an idle-in-transaction session that conflicts with replay (FATAL,
    40001; the client sees its connection closed): the answer is computed once more on the
    primary, and the replica is out of rotation until its next check finds it answering.

    The general path: its answer holds a transaction open between statements. The compiled
    path reads in one statement with none open between (schema/compiled.py), so replay has no
    open snapshot to cancel; its retry on another node is the stopped replica's test above."""
    pair = conflicting_pair
    async with deployed_on(pair) as built, \
            serve(built, compiled_execution=False, **replica_settings(pair)) as api:
        state = api.app.state.api
        replica = state.nodes.replicas[0]
        await until(lambda: replica.in_rotation)
        expected = await dashboard(api)
        calls: list[str] = []

        def conflict_on_first_statement(statement: str) -> None:
            calls.append(statement)
            if len(calls) == 1:
                # Rows the answer's snapshot may still see are removed on the primary (a dead
                # version and a VACUUM): replaying that cancels the replica's transaction.
                pair.psql(pair.primary_port, "UPDATE affiliates SET name = name WHERE affiliate_id = 300",
                          "fature")
                pair.psql(pair.primary_port, "VACUUM affiliates", "fature")
                pair.wait_caught_up()

        replica.database.query_listeners.append(conflict_on_first_statement)
        try:
            body = await dashboard(api)
        finally:
            replica.database.query_listeners.remove(conflict_on_first_statement)
        assert body == expected  # no error: the answer was computed again, on the primary
        assert counter(api, "read_retries", "replica1") == 1
        assert counter(api, "node_reads", "primary") >= 1
