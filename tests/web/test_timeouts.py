"""Server-side statement timeouts of the API (issue 13): exports and the robust connection
(statement pages, simulations, the workflow) run under ``long_read_timeout_seconds``, the
reads under ``read_timeout_seconds``; PostgreSQL cancels a longer statement and the client is
answered at once (503), never after the driver's own, later, limit."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any, cast

import asyncpg
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from commissions import service
from db.engine import QueryTimeout, make_engine
from db.reader import Database, sql
from resolvers.context import Context
from resolvers.statement import robust_connection
from tests.support.deployment import Api, Deployment, serve
from web.exports.reports import BUILDERS, Export

# Pending outside these files: schema/errors.py and web/errors.py code db.engine.QueryTimeout
# TIMEOUT (503); app.py builds the API's reader with db.reader.open_database(url, settings).

LONG = 0.3  # long_read_timeout_seconds of these tests: "300ms" in PostgreSQL's words


@pytest.fixture
async def served(deployment: Deployment) -> AsyncIterator[Api]:
    async with serve(deployment, long_read_timeout_seconds=LONG) as api:
        yield api


def fake_export(monkeypatch: pytest.MonkeyPatch, statement: str) -> None:
    """The ``summaries`` export replaced by one row: ``statement``'s value, in the snapshot."""

    async def rows(conn: AsyncConnection) -> AsyncIterator[list[list[Any]]]:
        yield [[(await conn.exec_driver_sql(statement)).scalar()]]

    async def build(ctx: Any, params: Any) -> Export:
        return Export(filename="timeout.csv", header=["value"], rows=rows)

    monkeypatch.setitem(BUILDERS, "summaries", build)


async def test_an_export_runs_under_the_long_timeout(served: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_export(monkeypatch, "SHOW statement_timeout")
    response = await served.client.get("/api/v1/exports/summaries")
    assert response.status_code == 200, response.text
    assert response.text.split() == ["value", "300ms"]


async def slow_export(served: Api, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, float]:
    fake_export(monkeypatch, "SELECT pg_sleep(5)")
    started = time.perf_counter()
    response = await served.client.get("/api/v1/exports/summaries")
    return response, time.perf_counter() - started


async def test_a_slow_export_is_cancelled_by_the_server(served: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    response, seconds = await slow_export(served, monkeypatch)
    assert response.status_code == 503, response.text
    assert seconds < 3  # the server's 0.3 s, not the 5 s sleep nor the driver's limit
    # The next export gets a connection whose transaction-local timeout is gone.
    fake_export(monkeypatch, "SELECT 1")
    assert (await served.client.get("/api/v1/exports/summaries")).status_code == 200


async def test_a_slow_export_answers_timeout(served: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    response, _ = await slow_export(served, monkeypatch)
    assert (response.status_code, response.json()["error"]["code"]) == (503, "TIMEOUT")


@pytest.fixture
async def one_connection(deployment: Deployment) -> AsyncIterator[Context]:
    """A context whose engine has a single connection with a 50 ms read timeout."""
    engine = make_engine(deployment.robust_url, pool_size=1, statement_timeout_ms=50)
    settings = deployment.settings.model_copy(update={"long_read_timeout_seconds": LONG})
    yield cast(Context, SimpleNamespace(database=Database(engine), settings=settings))
    await engine.dispose()


async def test_the_robust_connection_runs_under_the_long_timeout_while_lent(one_connection: Context) -> None:
    engine = one_connection.database.engine
    async with robust_connection(one_connection) as conn:
        assert await conn.fetchval("SHOW statement_timeout") == "300ms"
        pid = conn.get_server_pid()
        with pytest.raises(asyncpg.QueryCanceledError):
            await conn.execute("SELECT pg_sleep(5)")
    with pytest.raises(QueryTimeout):
        async with robust_connection(one_connection) as conn:
            await conn.execute("SELECT pg_sleep(5)")
    # Back in the pool with the engine's own (read) timeout: the same connection.
    async with engine.connect() as back:
        found = (await back.execute(select(func.current_setting("statement_timeout"),
                                           func.pg_backend_pid()))).one()
    assert tuple(found) == ("50ms", pid)


async def test_a_connection_returned_inside_a_transaction_is_discarded(one_connection: Context) -> None:
    engine = one_connection.database.engine
    async with robust_connection(one_connection) as conn:
        pid = conn.get_server_pid()
        await conn.execute("BEGIN")  # a caller's bug: it cannot be reset, so it is not reused
    async with engine.connect() as back:
        found = (await back.execute(select(func.current_setting("statement_timeout"),
                                           func.pg_backend_pid()))).one()
    assert found[0] == "50ms" and found[1] != pid


STATEMENT = '{ statement(id: "301:2025-03") { id } }'


async def slow_statement(served: Api, monkeypatch: pytest.MonkeyPatch) -> tuple[dict[str, Any], float]:
    async def sleeping(conn: asyncpg.Connection, *args: Any) -> None:
        await conn.execute("SELECT pg_sleep(5)")

    monkeypatch.setattr(service, "statement", sleeping)
    started = time.perf_counter()
    error = await served.error(STATEMENT)
    return error, time.perf_counter() - started


async def test_a_slow_statement_page_is_cancelled_by_the_server(
    served: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    error, seconds = await slow_statement(served, monkeypatch)
    assert seconds < 3
    assert error["extensions"]["code"] in {"TIMEOUT", "SERVICE_UNAVAILABLE"}


async def test_a_slow_statement_page_answers_timeout(served: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    error, _ = await slow_statement(served, monkeypatch)
    assert error["extensions"]["code"] == "TIMEOUT"


async def test_the_apps_reads_run_under_the_read_timeout(deployment: Deployment) -> None:
    async with serve(deployment, read_timeout_seconds=0.05) as api:
        database: Database = api.app.state.api.database
        direct = await database.fetch(sql("SELECT current_setting('statement_timeout') AS t"))
        engine = await database.fetch(select(func.current_setting("statement_timeout").label("t")))
        assert direct[0].t == engine[0].t == "50ms"
        with pytest.raises(QueryTimeout):
            await database.fetch(sql("SELECT true AS slept FROM pg_sleep(2)"))
