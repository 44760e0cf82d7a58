"""The API's reader of the robust database: read-only SQL in autocommit mode, each on its
own short pooled connection (never a session shared by concurrent DataLoader batches), a
database outage turned into ``DatabaseUnavailable`` with a message that names no internals.

Who may see which rows is not decided here: ``resolvers.viewer`` wraps this reader.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque, namedtuple
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Any, Protocol

import asyncpg
from sqlalchemy import TextClause, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql import Executable

from db.engine import (
    DatabaseUnavailable,
    QueryTimeout,
    client_timeout,
    is_timeout,
    make_engine,
    timeout_ms,
)
from db.settings import Settings, plain_url

log = logging.getLogger("fature.api")

# What an unreachable, restarting or overloaded database raises, wrapped or raw.
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.TimeoutError,  # pool exhausted
    OSError,
    TimeoutError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.OperatorInterventionError,
    # A pooled connection whose server went away while it sat idle can be handed out while
    # asyncpg is still taking in the termination ("cannot switch to state ...; another
    # operation is in progress"): the node is gone, like a closed connection.
    asyncpg.exceptions.InternalClientError,
)


def api_engine(url: str, settings: Settings, *, pool_size: int = 10) -> AsyncEngine:
    """The API's engine of the robust database: every connection starts with the read
    timeout (``FATURE_READ_TIMEOUT_SECONDS``) as its statement_timeout; exports and
    simulations raise it for their own transaction or connection (``long_read_timeout_seconds``),
    so the client-side limit is a bit above the longer of the two."""
    longest = max(settings.read_timeout_seconds, settings.long_read_timeout_seconds)
    return make_engine(url, pool_size=pool_size,
                       statement_timeout_ms=timeout_ms(settings.read_timeout_seconds),
                       command_timeout=client_timeout(longest))


def open_database(url: str, settings: Settings) -> Database:
    """The API's reader with the settings' read timeout on both of its paths."""
    return Database(api_engine(url, settings), read_timeout_seconds=settings.read_timeout_seconds)


class Reader(Protocol):
    """What the resolvers read through: ``Database`` (statement by statement) or one answer's
    ``db.snapshot.SnapshotReads`` (every statement in one snapshot)."""

    @property
    def engine(self) -> AsyncEngine: ...

    @property
    def query_listeners(self) -> list[Callable[[str], None]]: ...

    async def fetch(self, query: Executable, params: Mapping[str, Any] | None = None) -> Sequence[Any]: ...


@lru_cache(maxsize=256)
def sql(query: str) -> TextClause:
    """One TextClause per distinct SQL text, so its compiled forms are reused."""
    return text(query)


class Database:
    """The robust database as the API reads it: read-only queries in autocommit mode
    (no BEGIN/ROLLBACK round trips), one pooled connection per query.

    ``sql()`` queries (all the loaders' reads) go straight to asyncpg on connections of
    their own: SQLAlchemy's execution and pool checkout cost ~0.3 ms of CPU a query, more
    than most of these queries take in PostgreSQL. Anything else (the Core ``select()`` of
    the affiliate lists) runs through the engine. Rows of both are named tuples read like
    SQLAlchemy rows (``row.total_ggr``, ``row[0]``, ``row._mapping["level_1_count"]``).
    ``query_listeners`` are called with the SQL of each query sent on the asyncpg
    path (the tests count queries with them and with the engine's cursor events).

    ``read_timeout_seconds``: PostgreSQL's statement_timeout on the direct path's connections
    (the engine's are set by ``api_engine``); a read the server cancels raises ``QueryTimeout``.
    """

    def __init__(
        self, engine: AsyncEngine, *, max_connections: int = 10, read_timeout_seconds: float | None = None
    ) -> None:
        self.engine = engine
        self.read_timeout_seconds = read_timeout_seconds
        self._reader = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._dsn = plain_url(engine.url.render_as_string(hide_password=False))
        self._max_connections = max_connections
        self._connections: ReadConnections | None = None
        # id(TextClause) -> (the clause, its compiled form); the entry keeps its clause alive.
        self._compiled: dict[int, tuple[TextClause, tuple[str, tuple[str, ...]] | None]] = {}
        self.query_listeners: list[Callable[[str], None]] = []

    async def fetch(self, query: Executable, params: Mapping[str, Any] | None = None) -> Sequence[Any]:
        if isinstance(query, TextClause):
            compiled = self._compile(query)
            if compiled is not None:
                return await self._fetch_direct(compiled, params or {})
        try:
            async with self._reader.connect() as conn:
                result = await conn.execute(query, dict(params or {}))
                rows = result.all()
                columns = tuple(result.keys())
        except sa_exc.DBAPIError as exc:
            if is_timeout(exc):
                raise _timeout(exc) from exc
            if exc.connection_invalidated or isinstance(exc.orig, UNAVAILABLE_ERRORS):
                raise _unavailable(exc) from exc
            raise
        except UNAVAILABLE_ERRORS as exc:
            raise _unavailable(exc) from exc
        # The same row type as the direct path: SQLAlchemy's rows cost ~1 µs an attribute.
        make = _row_class(columns)._make
        return [make(r) for r in rows]

    def direct_form(self, query: Executable) -> tuple[str, tuple[str, ...]] | None:
        """``query`` as (SQL with $n placeholders, parameter names) for asyncpg, or None when it
        must run through the engine (not a TextClause, or typed/expanding parameters)."""
        return self._compile(query) if isinstance(query, TextClause) else None

    def connections(self) -> ReadConnections:
        """The direct path's connections (opened on first use)."""
        connections = self._connections
        if connections is None:
            connections = self._connections = ReadConnections(
                self._dsn, self._max_connections, self.read_timeout_seconds)
        return connections

    def _compile(self, query: TextClause) -> tuple[str, tuple[str, ...]] | None:
        """(SQL with $n placeholders, parameter names in order); None for a query with
        typed or expanding parameters, which SQLAlchemy processes (the engine runs those)."""
        cached = self._compiled.get(id(query))
        if cached is not None and cached[0] is query:
            return cached[1]
        compiled: tuple[str, tuple[str, ...]] | None = None
        binds = query._bindparams.values()
        if all(b.type._isnull and not b.expanding for b in binds):
            form = query.compile(dialect=self.engine.dialect)
            compiled = (form.string, tuple(form.positiontup or ()))
        if len(self._compiled) >= MAX_COMPILED:
            self._compiled.clear()
        self._compiled[id(query)] = (query, compiled)
        return compiled

    async def _fetch_direct(
        self, compiled: tuple[str, tuple[str, ...]], params: Mapping[str, Any]
    ) -> list[Any]:
        query, names = compiled
        args = [params[name] for name in names]
        connections = self.connections()
        try:
            conn = await connections.acquire()
            reusable = False
            try:
                for listener in self.query_listeners:
                    listener(query)
                records = await conn.fetch(query, *args)
                reusable = True
            except asyncpg.PostgresError:
                reusable = True  # the server answered with an error: the connection is ready again
                raise
            finally:
                connections.release(conn, reusable)
        except asyncpg.QueryCanceledError as exc:  # before UNAVAILABLE_ERRORS: it is one of them
            raise _timeout(exc) from exc
        except UNAVAILABLE_ERRORS as exc:
            raise _unavailable(exc) from exc
        if not records:
            return []
        make = _row_class(tuple(records[0].keys()))._make
        return [make(r) for r in records]

    async def close(self) -> None:
        """Close the direct path's connections (a later read opens new ones)."""
        connections, self._connections = self._connections, None
        if connections is not None:
            await connections.close()


MAX_COMPILED = 1024
POOL_TIMEOUT_SECONDS = 30  # as SQLAlchemy's pool: how long a read waits for a free connection


class ReadConnections:
    """The direct path's connections: at most ``size`` open, idle ones reused last in first
    out (their prepared statements are warm), a read waiting up to ``POOL_TIMEOUT_SECONDS``
    when all are busy. asyncpg's own pool costs ~80 µs of CPU a query (a proxy object, an
    idle timer and a reset per checkout); only autocommit reads run here, so a connection
    needs no reset, and one that failed other than by an error from the server (a cancelled
    or broken read) is closed, never reused.

    Waiting reads are served first come, first served: a released connection is handed to the
    oldest waiter directly, and a read arriving while others wait queues behind them (it used
    to take the connection a woken waiter was about to, sending that waiter to the back of the
    queue: under load a few reads waited many turns, the tail of the latencies)."""

    def __init__(self, dsn: str, size: int, timeout_seconds: float | None = None) -> None:
        self._dsn = dsn
        self._timeout_seconds = timeout_seconds
        self._size = size
        self._idle: list[asyncpg.Connection] = []
        self._open = 0  # connections open or being opened
        # Each waiter's future gets a connection, or None: "open one, a place is kept for you".
        self._waiters: deque[asyncio.Future[asyncpg.Connection | None]] = deque()
        self._closed = False

    async def acquire(self) -> asyncpg.Connection:
        if not self._waiters:
            conn = await self.try_acquire()
            if conn is not None:
                return conn
        waiter: asyncio.Future[asyncpg.Connection | None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(POOL_TIMEOUT_SECONDS):
                given = await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                handed = waiter.result()  # handed over as it gave up: pass it on
                if handed is not None:
                    self.release(handed, True)
                else:
                    self._open -= 1
                    self._wake_one()
            else:
                waiter.cancel()
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            raise
        if given is not None:
            return given
        try:  # a place was kept for this read: open its connection
            return await _connect(self._dsn, self._timeout_seconds)
        except BaseException:
            self._open -= 1
            self._wake_one()
            raise

    async def try_acquire(self) -> asyncpg.Connection | None:
        """An idle connection, or a new one while fewer than ``size`` are open; None (at once)
        when all are busy or reads are waiting (they come first)."""
        if self._waiters:
            return None
        while self._idle:
            conn = self._idle.pop()
            if not conn.is_closed():
                return conn
            self._open -= 1
        if self._open >= self._size:
            return None
        self._open += 1
        try:
            return await _connect(self._dsn, self._timeout_seconds)
        except BaseException:
            self._open -= 1
            self._wake_one()
            raise

    def release(self, conn: asyncpg.Connection, reusable: bool) -> None:
        if reusable and not self._closed and not conn.is_closed():
            while self._waiters:
                waiter = self._waiters.popleft()
                if not waiter.done():
                    waiter.set_result(conn)  # straight to the oldest waiting read
                    return
            self._idle.append(conn)
            return
        self._open -= 1
        conn.terminate()
        self._wake_one()

    def _wake_one(self) -> None:
        """A place is free (a connection closed or never opened): the oldest waiter opens one."""
        if self._closed or self._open >= self._size:
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._open += 1
                waiter.set_result(None)
                return

    async def close(self) -> None:
        """Close the idle connections now; busy ones are closed when released."""
        self._closed = True
        idle, self._idle = self._idle, []
        self._open -= len(idle)
        for conn in idle:
            try:
                await conn.close(timeout=5)
            except Exception:  # noqa: BLE001 - a connection that will not close cleanly is dropped
                conn.terminate()


async def _connect(dsn: str, timeout_seconds: float | None = None) -> asyncpg.Connection:
    # The same limits as the engine's connections (db/engine.py, ``api_engine``): the server
    # cancels a read after ``timeout_seconds``, the client gives up a bit later.
    if timeout_seconds is None:
        conn = await asyncpg.connect(dsn, timeout=5, command_timeout=30)
    else:
        conn = await asyncpg.connect(
            dsn, timeout=5, command_timeout=client_timeout(timeout_seconds),
            server_settings={"statement_timeout": str(timeout_ms(timeout_seconds))},
        )
    try:
        await _same_codecs_as_sqlalchemy(conn)
    except BaseException:
        conn.terminate()
        raise
    return conn


async def _same_codecs_as_sqlalchemy(connection: asyncpg.Connection) -> None:
    """json and jsonb decoded as SQLAlchemy's asyncpg dialect decodes them, so a row reads the
    same on either path."""
    await connection.set_type_codec("json", encoder=str.encode, decoder=lambda b: json.loads(b.decode()),
                                    schema="pg_catalog", format="binary")
    await connection.set_type_codec("jsonb", encoder=lambda s: b"\x01" + s.encode(),
                                    decoder=lambda b: json.loads(b[1:].decode()),
                                    schema="pg_catalog", format="binary")


@lru_cache(maxsize=256)
def _row_class(columns: tuple[str, ...]) -> Any:
    """A named tuple per result shape, with SQLAlchemy's ``_mapping`` view."""
    base = namedtuple("Row", columns, rename=True)  # type: ignore[misc]  # noqa: PYI024
    return type("Row", (base,), {
        "__slots__": (),
        "_columns": columns,
        "_mapping": property(lambda row: dict(zip(row._columns, row, strict=True))),
    })


UNAVAILABLE_MESSAGE = "The database is unavailable right now; try again shortly."


def read_error(exc: BaseException) -> BaseException | None:
    """What a failed read raises to the resolvers (``QueryTimeout``, ``DatabaseUnavailable``),
    or None for an error that is not the database's availability (raised as it is)."""
    if isinstance(exc, asyncpg.QueryCanceledError) or is_timeout(exc):
        return _timeout(exc)
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated or isinstance(exc.orig, UNAVAILABLE_ERRORS):
            return _unavailable(exc)
        return None
    if isinstance(exc, UNAVAILABLE_ERRORS):
        return _unavailable(exc)
    return None


def _timeout(exc: BaseException) -> QueryTimeout:
    log.warning("robust database read cancelled by its statement_timeout: %s", type(exc).__name__)
    return QueryTimeout()


def _unavailable(exc: BaseException) -> DatabaseUnavailable:
    log.warning("robust database unavailable: %s", type(exc).__name__)
    return DatabaseUnavailable(UNAVAILABLE_MESSAGE)


def rows_of(columns: tuple[str, ...], records: Sequence[Any]) -> list[Any]:
    """Records (asyncpg or SQLAlchemy) as the reader's named-tuple rows."""
    make = _row_class(columns)._make
    return [make(r) for r in records]
