"""The direct read path's connections (resolvers/viewer.py ReadConnections): never more than
the cap, waiting reads are served in turn or time out as an outage, a broken or cancelled read
never hands its connection to the next one, and a server error keeps the connection."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy import func, select

import db.reader as access
from db.engine import DatabaseUnavailable, QueryTimeout, make_engine, timeout_ms
from db.reader import Database, open_database, sql
from tests.support.deployment import Deployment

SLEEP = sql("SELECT true AS slept, pg_backend_pid() AS pid FROM pg_sleep(:seconds)")
PID = sql("SELECT pg_backend_pid() AS pid")


@pytest.fixture
async def database(deployment: Deployment) -> AsyncIterator[Database]:
    engine = make_engine(deployment.robust_url)
    database = Database(engine, max_connections=2)
    yield database
    await database.close()
    await engine.dispose()


async def test_at_most_the_cap_and_waiting_reads_are_served(database: Database) -> None:
    rows = await asyncio.gather(*(database.fetch(SLEEP, {"seconds": 0.05}) for _ in range(6)))
    assert all(r[0].slept for r in rows)
    assert len({r[0].pid for r in rows}) <= 2
    assert database._connections is not None and database._connections._open <= 2


async def test_waiting_reads_are_served_first_come_first_served(deployment: Deployment) -> None:
    """A released connection goes to the oldest waiting read, never to one that arrives
    later (no read waits more than its turn: the tail of the latencies under load)."""
    pool = access.ReadConnections(deployment.robust_url, 1)
    served: list[str] = []
    try:
        held = await pool.acquire()

        async def read(name: str) -> None:
            conn = await pool.acquire()
            served.append(name)
            await asyncio.sleep(0)  # hold it over a turn of the loop, as a statement would
            pool.release(conn, True)

        first = asyncio.ensure_future(read("first"))
        second = asyncio.ensure_future(read("second"))
        await asyncio.sleep(0.01)  # both wait
        pool.release(held, True)
        late = asyncio.ensure_future(read("late"))  # arrives as the connection comes back
        await asyncio.gather(first, second, late)
        assert served == ["first", "second", "late"]
        assert pool._open == 1
        # A read cancelled while waiting gives its turn to the next.
        held = await pool.acquire()
        cancelled = asyncio.ensure_future(read("cancelled"))
        after = asyncio.ensure_future(read("after"))
        await asyncio.sleep(0.01)
        cancelled.cancel()
        pool.release(held, True)
        await after
        assert served[-1] == "after" and "cancelled" not in served
        # A broken connection lets the oldest waiter open a new one.
        held = await pool.acquire()
        waiting = asyncio.ensure_future(read("reopened"))
        await asyncio.sleep(0.01)
        pool.release(held, False)
        await waiting
        assert served[-1] == "reopened" and pool._open == 1
    finally:
        await pool.close()


async def test_idle_connections_are_reused(database: Database) -> None:
    first = (await database.fetch(PID))[0].pid
    assert [(await database.fetch(PID))[0].pid for _ in range(3)] == [first] * 3


async def test_waiting_too_long_is_an_outage(database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(access, "POOL_TIMEOUT_SECONDS", 0.05)
    busy = [asyncio.ensure_future(database.fetch(SLEEP, {"seconds": 0.5})) for _ in range(2)]
    await asyncio.sleep(0.1)
    with pytest.raises(DatabaseUnavailable):
        await database.fetch(PID)
    await asyncio.gather(*busy)
    assert (await database.fetch(PID))[0].pid  # served again once a connection is free


async def test_a_cancelled_read_does_not_hand_on_its_connection(database: Database) -> None:
    before = (await database.fetch(PID))[0].pid
    read = asyncio.ensure_future(database.fetch(SLEEP, {"seconds": 5}))
    await asyncio.sleep(0.1)
    read.cancel()
    with pytest.raises(asyncio.CancelledError):
        await read
    after = (await database.fetch(PID))[0].pid
    assert after != before  # the cancelled connection was closed, a new one answers
    assert database._connections is not None and database._connections._open == 1


async def test_a_server_error_keeps_the_connection(database: Database) -> None:
    before = (await database.fetch(PID))[0].pid
    with pytest.raises(asyncpg.DivisionByZeroError):
        await database.fetch(sql("SELECT 1 / 0 AS x"))
    assert (await database.fetch(PID))[0].pid == before


async def test_a_closed_pool_opens_again_on_the_next_read(database: Database) -> None:
    await database.fetch(PID)
    await database.close()
    assert database._connections is None
    assert (await database.fetch(PID))[0].pid


# ------------------------------------------------------------------ statement timeouts (issue 13)
@pytest.fixture
async def timed(deployment: Deployment) -> AsyncIterator[Database]:
    """The API's reader as the app builds it, with a 50 ms read timeout."""
    settings = deployment.settings.model_copy(update={"read_timeout_seconds": 0.05})
    database = open_database(deployment.robust_url, settings)
    yield database
    await database.close()
    await database.engine.dispose()


SHOW_TIMEOUT = "SELECT current_setting('statement_timeout') AS timeout"


async def test_the_read_timeout_is_set_on_both_paths(timed: Database) -> None:
    direct = await timed.fetch(sql(SHOW_TIMEOUT))
    engine = await timed.fetch(select(func.current_setting("statement_timeout").label("timeout")))
    assert direct[0].timeout == engine[0].timeout == "50ms"


async def test_a_slow_read_is_cancelled_by_the_server_as_a_timeout(timed: Database) -> None:
    with pytest.raises(QueryTimeout):
        await timed.fetch(SLEEP, {"seconds": 3})
    # The server cancelled it (not the client's 2 s later limit): well under a second, and the
    # connection is kept for the next read.
    assert timed._connections is not None and timed._connections._open == 1
    assert (await timed.fetch(sql(SHOW_TIMEOUT)))[0].timeout == "50ms"


async def test_a_slow_read_through_the_engine_is_a_timeout(timed: Database) -> None:
    with pytest.raises(QueryTimeout):
        await timed.fetch(select(func.pg_sleep(3)))


async def test_a_timeout_is_coded_timeout_and_is_a_database_unavailable() -> None:
    assert issubclass(QueryTimeout, DatabaseUnavailable)
    assert QueryTimeout.code == "TIMEOUT"
    assert timeout_ms(0.05) == 50 and timeout_ms(0.0001) == 1  # never 0 (no timeout at all)


async def test_without_a_timeout_setting_the_server_default_stays(database: Database) -> None:
    assert (await database.fetch(sql(SHOW_TIMEOUT)))[0].timeout == "0"
