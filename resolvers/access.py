"""The one path from the API to the robust database, and the one place that decides who sees what.

Every loader and resolver reads through ``DataAccess``: it asks the ``Viewer`` which
affiliates the caller may see, runs the statement on its own short pooled connection (never
a session shared by concurrent DataLoader batches), and turns a database outage into a
``ServiceUnavailable`` that names no internals. The token's ``Viewer`` (resolvers/auth.py)
decides what is visible; nothing else in the API does.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque, namedtuple
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from typing import Any

import asyncpg
from sqlalchemy import TextClause, bindparam, literal_column, or_, select, table, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql import ColumnElement, Executable

from db.settings import plain_url
from resolvers.privacy import mask_email, mask_name, mask_phone
from schema.errors import ServiceUnavailable

log = logging.getLogger("fature.api")

# What an unreachable, restarting or overloaded database raises, wrapped or raw.
_UNAVAILABLE: tuple[type[BaseException], ...] = (
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
)


@lru_cache(maxsize=256)
def sql(statement: str) -> TextClause:
    """One TextClause per distinct SQL text, so its compiled forms are reused."""
    return text(statement)


class Database:
    """The robust database as the API reads it: read-only statements in autocommit mode
    (no BEGIN/ROLLBACK round trips), one pooled connection per statement.

    ``sql()`` statements (all the loaders' reads) go straight to asyncpg on connections of
    their own: SQLAlchemy's execution and pool checkout cost ~0.3 ms of CPU a statement, more
    than most of these statements take in PostgreSQL. Anything else (the Core ``select()`` of
    the affiliate lists) runs through the engine. Rows of both are named tuples read like
    SQLAlchemy rows (``row.total_ggr``, ``row[0]``, ``row._mapping["level_1_count"]``).
    ``statement_listeners`` are called with the SQL of each statement sent on the asyncpg
    path (the tests count statements with them and with the engine's cursor events).
    """

    def __init__(self, engine: AsyncEngine, *, max_connections: int = 10) -> None:
        self.engine = engine
        self._reader = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._dsn = plain_url(engine.url.render_as_string(hide_password=False))
        self._max_connections = max_connections
        self._connections: ReadConnections | None = None
        # id(TextClause) -> (the clause, its compiled form); the entry keeps its clause alive.
        self._compiled: dict[int, tuple[TextClause, tuple[str, tuple[str, ...]] | None]] = {}
        self.statement_listeners: list[Callable[[str], None]] = []

    async def fetch(self, statement: Executable, params: Mapping[str, Any] | None = None) -> Sequence[Any]:
        if isinstance(statement, TextClause):
            compiled = self._compile(statement)
            if compiled is not None:
                return await self._fetch_direct(compiled, params or {})
        try:
            async with self._reader.connect() as conn:
                result = await conn.execute(statement, dict(params or {}))
                rows = result.all()
                columns = tuple(result.keys())
        except _UNAVAILABLE as exc:
            raise _unavailable(exc) from exc
        except sa_exc.DBAPIError as exc:
            if exc.connection_invalidated or isinstance(exc.orig, _UNAVAILABLE):
                raise _unavailable(exc) from exc
            raise
        # The same row type as the direct path: SQLAlchemy's rows cost ~1 µs an attribute.
        make = _row_class(columns)._make
        return [make(r) for r in rows]

    def _compile(self, statement: TextClause) -> tuple[str, tuple[str, ...]] | None:
        """(SQL with $n placeholders, parameter names in order); None for a statement with
        typed or expanding parameters, which SQLAlchemy processes (the engine runs those)."""
        cached = self._compiled.get(id(statement))
        if cached is not None and cached[0] is statement:
            return cached[1]
        compiled: tuple[str, tuple[str, ...]] | None = None
        binds = statement._bindparams.values()
        if all(b.type._isnull and not b.expanding for b in binds):
            form = statement.compile(dialect=self.engine.dialect)
            compiled = (form.string, tuple(form.positiontup or ()))
        if len(self._compiled) >= MAX_COMPILED:
            self._compiled.clear()
        self._compiled[id(statement)] = (statement, compiled)
        return compiled

    async def _fetch_direct(
        self, compiled: tuple[str, tuple[str, ...]], params: Mapping[str, Any]
    ) -> list[Any]:
        query, names = compiled
        args = [params[name] for name in names]
        connections = self._connections
        if connections is None:
            connections = self._connections = ReadConnections(self._dsn, self._max_connections)
        try:
            conn = await connections.acquire()
            reusable = False
            try:
                for listener in self.statement_listeners:
                    listener(query)
                records = await conn.fetch(query, *args)
                reusable = True
            except asyncpg.PostgresError:
                reusable = True  # the server answered with an error: the connection is ready again
                raise
            finally:
                connections.release(conn, reusable)
        except _UNAVAILABLE as exc:
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
    when all are busy. asyncpg's own pool costs ~80 µs of CPU a statement (a proxy object, an
    idle timer and a reset per checkout); only autocommit reads run here, so a connection
    needs no reset, and one that failed other than by an error from the server (a cancelled
    or broken read) is closed, never reused."""

    def __init__(self, dsn: str, size: int) -> None:
        self._dsn = dsn
        self._size = size
        self._idle: list[asyncpg.Connection] = []
        self._open = 0  # connections open or being opened
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._closed = False

    async def acquire(self) -> asyncpg.Connection:
        while True:
            while self._idle:
                conn = self._idle.pop()
                if not conn.is_closed():
                    return conn
                self._open -= 1
            if self._open < self._size:
                self._open += 1
                try:
                    return await _connect(self._dsn)
                except BaseException:
                    self._open -= 1
                    self._wake_one()
                    raise
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                async with asyncio.timeout(POOL_TIMEOUT_SECONDS):
                    await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    self._wake_one()  # it was woken for a connection it will not take: pass it on
                else:
                    waiter.cancel()
                raise

    def release(self, conn: asyncpg.Connection, reusable: bool) -> None:
        if reusable and not self._closed and not conn.is_closed():
            self._idle.append(conn)
        else:
            self._open -= 1
            conn.terminate()
        self._wake_one()

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
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


async def _connect(dsn: str) -> asyncpg.Connection:
    # The same limits as the engine's connections (db/engine.py).
    conn = await asyncpg.connect(dsn, timeout=5, command_timeout=30)
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
def _row_class(columns: tuple[str, ...]) -> type:
    """A named tuple per result shape, with SQLAlchemy's ``_mapping`` view."""
    base = namedtuple("Row", columns, rename=True)  # type: ignore[misc]  # noqa: PYI024
    return type("Row", (base,), {
        "__slots__": (),
        "_columns": columns,
        "_mapping": property(lambda row: dict(zip(row._columns, row, strict=True))),
    })


def _unavailable(exc: BaseException) -> ServiceUnavailable:
    log.warning("robust database unavailable: %s", type(exc).__name__)
    return ServiceUnavailable()


class Role(StrEnum):
    ADMIN = "admin"
    ANALYST = "analyst"
    AFFILIATE = "affiliate"


# The affiliates whose upline (levels 1-5) holds :me: the downline an affiliate may read.
_DOWNLINE_MEMBERS = sql(
    "SELECT referred_id FROM affiliate_referrals WHERE referrer_id = :me AND referred_id = ANY(:ids)"
)


# Built once: a column built per request is a small reference cycle left to the collector.
_REFERRALS = table("affiliate_referrals")
_REFERRED_ID = literal_column("referred_id")
_REFERRER_ID = literal_column("referrer_id")


@dataclass(frozen=True)
class Viewer:
    """Who is asking, from a verified token; the policy of who sees what lives here.

    - admin: everything, and alone runs mutations;
    - analyst: everything, e-mail and phone masked;
    - affiliate: itself and its downline (levels 1-5); the downline are referred people, so
      their names are masked and their e-mail and phone hidden (LGPD). Anyone else (uplines
      included) is invisible exactly like an unknown id: null in GraphQL, 404 in REST.
    """

    role: Role
    subject: str
    affiliate_id: int | None = None

    @property
    def sees_everyone(self) -> bool:
        return self.role is not Role.AFFILIATE

    @property
    def scope_key(self) -> str:
        """What the answers this viewer gets depend on (the response cache keys on it)."""
        return f"affiliate:{self.affiliate_id}" if self.role is Role.AFFILIATE else self.role.value

    def may_run_mutations(self) -> bool:
        return self.role is Role.ADMIN

    def may_introspect(self, affiliates_allowed: bool) -> bool:
        return self.role is not Role.AFFILIATE or affiliates_allowed

    def search_columns(self) -> tuple[str, ...]:
        """Columns the `search` filter may match: never a masked one (it would be an oracle)."""
        if self.role is Role.ADMIN:
            return ("name", "email")
        if self.role is Role.ANALYST:
            return ("name",)
        return ()

    def affiliate_predicate(self, column: ColumnElement[Any]) -> ColumnElement[bool] | None:
        """A SQL condition on an affiliate id column for list queries; None means all rows."""
        if self.sees_everyone:
            return None
        downline = (
            select(_REFERRED_ID)
            .select_from(_REFERRALS)
            .where(_REFERRER_ID == bindparam("scope_me", self.affiliate_id))
        )
        return or_(column == self.affiliate_id, column.in_(downline))

    def personal_data(
        self, affiliate_id: int, name: str, email: str | None, phone: str | None
    ) -> tuple[str, str | None, str | None]:
        """(name, email, phone) as this viewer may see them."""
        if self.role is Role.ADMIN or affiliate_id == self.affiliate_id:
            return name, email, phone
        if self.role is Role.ANALYST:
            return name, mask_email(email), mask_phone(phone)
        return mask_name(name), None, None


class DataAccess:
    """``Database`` seen through a ``Viewer``: what every loader and resolver calls.

    For an affiliate, membership of the downline is decided here with one batched statement
    per loader batch, for the ids this request has not checked yet (its own id never costs one).
    """

    def __init__(self, database: Database, viewer: Viewer) -> None:
        self.database = database
        self.viewer = viewer
        self._member: dict[int, bool] = {}

    async def visible_ids(self, affiliate_ids: Iterable[int]) -> list[int]:
        """The subset of ``affiliate_ids`` this viewer may read, in order."""
        ids = list(affiliate_ids)
        viewer = self.viewer
        if viewer.sees_everyone:
            return ids
        me = viewer.affiliate_id
        unknown = list({i for i in ids if i != me and i not in self._member})
        if unknown:
            rows = await self.database.fetch(_DOWNLINE_MEMBERS, {"me": me, "ids": unknown})
            found = {r.referred_id for r in rows}
            for i in unknown:
                self._member[i] = i in found
        return [i for i in ids if i == me or self._member.get(i, False)]

    async def for_affiliates(
        self, statement: Executable, affiliate_ids: Iterable[int], **params: Any
    ) -> Sequence[Row]:
        """Run a statement keyed by ``:ids`` (affiliate ids), restricted to visible ones."""
        visible = await self.visible_ids(affiliate_ids)
        if not visible:
            return []
        return await self.database.fetch(statement, {"ids": visible, **params})

    async def listing(self, statement: Executable, **params: Any) -> Sequence[Row]:
        """Run a list query; the caller built it with ``scoped`` so the viewer's predicate applies."""
        return await self.database.fetch(statement, params)

    def scoped(self, column: ColumnElement[Any]) -> list[ColumnElement[bool]]:
        predicate = self.viewer.affiliate_predicate(column)
        return [] if predicate is None else [predicate]

    async def visible_rows(self, rows: Sequence[Row], attribute: str = "affiliate_id") -> list[Row]:
        """Rows fetched by another key (a validation id), kept only when their affiliate is visible."""
        visible = set(await self.visible_ids({getattr(r, attribute) for r in rows}))
        return [r for r in rows if getattr(r, attribute) in visible]

    async def global_state(self, statement: Executable, **params: Any) -> Sequence[Row]:
        """Data about the system, not an affiliate (ETL runs)."""
        return await self.database.fetch(statement, params)
