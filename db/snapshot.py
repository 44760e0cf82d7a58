"""One answer, one snapshot: every statement of one API answer reads the same committed state
of one database node, so a dashboard answered while an ETL cycle commits is entirely before
or entirely after it, and its ``asOf`` is the ETL run that state holds.

How (option (a) of issue 16, chosen over the alternatives):

- The answer's first read opens ``BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY`` on a
  pooled connection and, in one statement, exports its snapshot (``pg_export_snapshot()``) and
  reads the last successful ETL run in it (the answer's ``asOf`` and cache generation).
- DataLoader batches take a connection of the answer's (a connection is never shared by two
  statements in flight): an idle one it holds; else, below ``MAX_CONNECTIONS_PER_ANSWER``, a
  free pooled connection that joins with ``BEGIN ...; SET TRANSACTION SNAPSHOT '<id>'`` in one
  round trip; else the next of its own to come back. An answer holding connections never
  waits on the pool (two answers each holding one and waiting for another would deadlock).
  Reads through the engine (Core ``select()``s with expanding parameters) join the same
  snapshot on an engine connection.
- ``close()`` ends the transactions (ROLLBACK: nothing was written) and returns the
  connections; the edge runs it after the answer is sent (web/state.py).

Why this and not the others: (b) re-running an answer whose statements saw different runs
needs the run id read on every connection anyway (the round trip that joining the snapshot
costs) plus retries; (c) one connection per answer with the batches serialized is this design
with ``MAX_CONNECTIONS_PER_ANSWER = 1``, which measured best on the 2-core machine (see the
constant), while the export keeps the engine path (and a larger setting) in the same snapshot.
Exporting and importing snapshots works on a hot standby (tried on PostgreSQL 15; tested in
tests/db/test_replicas.py), so the same path serves the replicas.

A mutation's answer does not use a snapshot (``autocommit=True``): it reads the primary
statement by statement, after its own writes (read-your-writes).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql import Executable

from db.engine import DatabaseUnavailable
from db.reader import Database, read_error, rows_of

BEGIN = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
# The snapshot and the ETL run it holds, in one round trip (a row even before any run).
# The ETL run a snapshot holds: the last successful one (columns id, source_as_of).
SNAPSHOT_RUN = (
    "SELECT id, source_as_of FROM etl.runs "
    "WHERE status = 'success' AND finished_at IS NOT NULL ORDER BY finished_at DESC LIMIT 1"
)
EXPORT = (
    "SELECT pg_export_snapshot() AS snapshot, r.id AS run_id, r.source_as_of "
    f"FROM (SELECT 1) AS one LEFT JOIN LATERAL ({SNAPSHOT_RUN}) AS r ON true"
)
# SQLSTATEs of a standby cancelling a read that conflicts with the WAL it replays
# (PostgreSQL's "canceling statement due to conflict with recovery": serialization_failure,
# and database_dropped when the database itself went).
RECOVERY_CONFLICT_STATES = frozenset({"40001", "57P04"})
# An answer's concurrent direct-path connections; its other batches wait for one of them. 1
# measured best (dashboard p50 +6% and +0.4 ms API CPU a request over the autocommit reads,
# against +16% with 4: every extra connection costs a BEGIN/SET TRANSACTION SNAPSHOT and a
# ROLLBACK round trip, more than running the dashboard's short statements side by side saves
# on 2 cores). Raise it where PostgreSQL time dominates an answer.
MAX_CONNECTIONS_PER_ANSWER = 1


class RecoveryConflict(DatabaseUnavailable):
    """A replica cancelled a read to replay WAL: the answer is computed again on another node."""


class SnapshotReads:
    """One answer's reads on one node (``database``), all in one exported snapshot.

    The same ``fetch`` as ``db.reader.Database`` (the resolvers cannot tell the difference).
    ``run_id``/``as_of``: the ETL run the snapshot holds, once the first read ran.
    ``node_failed``: a read failed because of the node (down, or a recovery conflict): the
    caller may compute the answer again elsewhere."""

    def __init__(self, database: Database, *, autocommit: bool = False) -> None:
        self.database = database
        self.autocommit = autocommit
        self.run_id: int | None = None
        self.as_of: datetime | None = None
        self.node_failed = False
        self.statements = 0
        self._alone = False  # the answer was read by one statement (``fetch_alone``)
        self._snapshot: asyncio.Future[str] | None = None
        self._idle: list[asyncpg.Connection] = []
        self._held: list[asyncpg.Connection] = []
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def engine(self) -> AsyncEngine:
        return self.database.engine

    @property
    def query_listeners(self) -> list[Any]:
        return self.database.query_listeners

    @property
    def holding(self) -> bool:
        """Whether connections are to be given back (``close()``)."""
        return bool(self._held)

    @property
    def read(self) -> bool:
        """Whether a snapshot was taken (at least one read ran in it)."""
        if self._alone:
            return True
        return self._snapshot is not None and self._snapshot.done() and not self._snapshot.exception()

    async def fetch(self, query: Executable, params: Mapping[str, Any] | None = None) -> Sequence[Any]:
        self.statements += 1
        if self.autocommit:
            return await self._watch(self.database.fetch(query, params))
        form = self.database.direct_form(query)
        if form is None:
            return await self._watch(self._fetch_engine(query, params or {}))
        return await self._watch(self._fetch_direct(form, params or {}))

    async def fetch_alone(self, query: str, args: Sequence[Any]) -> asyncpg.Record:
        """The whole answer in one statement (SQL with $n placeholders): a single statement
        reads one snapshot by itself, so no transaction is opened, exported or ended. Its row
        must hold ``run_id`` and ``run_as_of``, the ETL run of that snapshot (``SNAPSHOT_RUN``):
        they become ``run_id``/``as_of`` as an exported snapshot's would. Only as the answer's
        first and only read (the compiled path, schema/compiled.py)."""
        assert self._snapshot is None and not self._held and not self.autocommit
        self.statements += 1
        return await self._watch(self._fetch_alone(query, args))

    async def _fetch_alone(self, query: str, args: Sequence[Any]) -> asyncpg.Record:
        pool = self.database.connections()
        try:
            conn = await pool.acquire()
        except BaseException as exc:
            mapped = read_error(exc)
            if mapped is not None:
                raise mapped from exc
            raise
        reusable = False
        try:
            row = await self._statement(conn, query, args, one=True)
            reusable = True
        finally:
            pool.release(conn, reusable)
        assert row is not None
        self.run_id = row["run_id"]
        self.as_of = row["run_as_of"]
        self._alone = True
        return row

    async def _watch(self, reading: Any) -> Sequence[Any]:
        try:
            result: Sequence[Any] = await reading
            return result
        except asyncpg.PostgresError as exc:
            if exc.sqlstate in RECOVERY_CONFLICT_STATES:
                self.node_failed = True
                raise RecoveryConflict("The read was cancelled by a replica; try again.") from exc
            raise
        except DatabaseUnavailable as exc:
            if not isinstance(exc, RecoveryConflict) and exc.__class__ is DatabaseUnavailable:
                self.node_failed = True
            raise

    async def _fetch_direct(self, form: tuple[str, tuple[str, ...]], params: Mapping[str, Any]) -> list[Any]:
        query, names = form
        args = [params[name] for name in names]
        conn = await self._acquire()
        ok = False
        try:
            records = await self._statement(conn, query, args, one=False)
            ok = True
        finally:
            if ok:
                self._give_back(conn)
            else:
                await self._drop(conn)  # its transaction is aborted: never read again
        return rows_of(tuple(records[0].keys()), records) if records else []

    async def _statement(
        self, conn: asyncpg.Connection, query: str, args: Sequence[Any], *, one: bool
    ) -> Any:
        """One statement on ``conn`` (the query listeners told first), its errors mapped as the
        reader maps them; a replica's recovery conflict is left to ``_watch``."""
        try:
            for listener in self.database.query_listeners:
                listener(query)
            return await (conn.fetchrow(query, *args) if one else conn.fetch(query, *args))
        except asyncpg.PostgresError as exc:
            if exc.sqlstate in RECOVERY_CONFLICT_STATES:
                raise
            raise read_error(exc) or exc from exc
        except BaseException as exc:
            mapped = read_error(exc)
            if mapped is not None:
                raise mapped from exc
            raise

    async def _fetch_engine(self, query: Executable, params: Mapping[str, Any]) -> list[Any]:
        snapshot = await self._snapshot_id()
        try:
            async with self.database.engine.connect() as conn:
                conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
                # The transaction is opened and ended on the driver's connection (SQLAlchemy in
                # autocommit mode sends no BEGIN of its own): its events see the query alone.
                driver = (await conn.get_raw_connection()).driver_connection
                assert driver is not None
                await driver.execute(f"{BEGIN}; SET TRANSACTION SNAPSHOT '{snapshot}'")
                try:
                    result = await conn.execute(query, dict(params))
                    rows = result.all()
                    columns = tuple(result.keys())
                finally:
                    await driver.execute("ROLLBACK")
        except Exception as exc:
            orig = getattr(exc, "orig", None)
            cause = getattr(orig, "__cause__", None)
            state = getattr(cause, "sqlstate", None) or getattr(orig, "sqlstate", None)
            if state in RECOVERY_CONFLICT_STATES:
                self.node_failed = True
                raise RecoveryConflict("The read was cancelled by a replica; try again.") from exc
            mapped = read_error(exc)
            if mapped is not None:
                raise mapped from exc
            raise
        return rows_of(columns, rows)

    async def _snapshot_id(self) -> str:
        if self._snapshot is None:
            conn = await self._acquire()
            self._give_back(conn)
        assert self._snapshot is not None
        return await asyncio.shield(self._snapshot)

    async def _acquire(self) -> asyncpg.Connection:
        """A connection in the answer's snapshot: an idle one it holds; else a new one from the
        pool if one is free (at most ``MAX_CONNECTIONS_PER_ANSWER``); else the next of its own
        to come back. An answer holding connections never waits on the pool: two answers each
        holding some and waiting for more would wait for each other."""
        pool = self.database.connections()
        while True:
            if self._idle:
                return self._idle.pop()
            if self._snapshot is None:
                return await self._export(pool)
            snapshot_id = await asyncio.shield(self._snapshot)
            if self._idle:  # one came back while we waited
                return self._idle.pop()
            if not self._held or len(self._held) < MAX_CONNECTIONS_PER_ANSWER:
                try:
                    conn = await (pool.acquire() if not self._held else pool.try_acquire())
                except BaseException as exc:
                    mapped = read_error(exc)
                    if mapped is not None:
                        raise mapped from exc
                    raise
                if conn is not None:
                    return await self._begin(pool, conn, f"{BEGIN}; SET TRANSACTION SNAPSHOT '{snapshot_id}'")
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            await waiter

    async def _export(self, pool: Any) -> asyncpg.Connection:
        """The answer's first connection: its transaction, the snapshot's id and ETL run."""
        self._snapshot = asyncio.get_running_loop().create_future()
        snapshot = self._snapshot
        try:
            conn = await self._begin(pool, await pool.acquire(), BEGIN)
            row = await conn.fetchrow(EXPORT)
        except BaseException as exc:
            mapped = read_error(exc)
            if isinstance(exc, Exception):
                snapshot.set_exception(mapped or exc)
                snapshot.exception()  # retrieved here: the waiters re-raise it themselves
            else:
                snapshot.cancel()
                self._snapshot = None
            self._wake()
            if mapped is not None:
                raise mapped from exc
            raise
        assert row is not None
        self.run_id = row["run_id"]
        self.as_of = row["source_as_of"]
        snapshot.set_result(row["snapshot"])
        return conn

    async def _begin(self, pool: Any, conn: asyncpg.Connection, begin: str) -> asyncpg.Connection:
        try:
            await conn.execute(begin)
        except BaseException as exc:
            pool.release(conn, False)
            self._wake()
            mapped = read_error(exc)
            if mapped is not None:
                raise mapped from exc
            raise
        self._held.append(conn)
        return conn

    def _give_back(self, conn: asyncpg.Connection) -> None:
        self._idle.append(conn)
        self._wake()

    async def _drop(self, conn: asyncpg.Connection) -> None:
        """Give a connection whose statement failed back to the pool now (ended, or closed)."""
        if conn in self._held:
            self._held.remove(conn)
        await self._end(conn)
        self._wake()

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def _end(self, conn: asyncpg.Connection) -> None:
        reusable = False
        with contextlib.suppress(Exception):
            if not conn.is_closed():
                await conn.execute("ROLLBACK")  # read only: nothing to commit
                reusable = not conn.is_in_transaction()
        self.database.connections().release(conn, reusable)

    async def close(self) -> None:
        """End the answer's transactions and give their connections back."""
        held, self._held, self._idle = self._held, [], []
        if held:
            await asyncio.gather(*(self._end(conn) for conn in held))
