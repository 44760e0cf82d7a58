"""The one path from the API to the robust database, and the one place that decides who sees what.

Every loader and resolver reads through ``DataAccess``: it asks the ``Viewer`` which
affiliates the caller may see, runs the statement on its own short pooled connection (never
a session shared by concurrent DataLoader batches), and turns a database outage into a
``ServiceUnavailable`` that names no internals. Security (JWT, scoping, rate limits) plugs
into ``Viewer`` later, without touching any loader.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql import ColumnElement, Executable

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


class Database:
    """The robust database as the API reads it: read-only statements in autocommit mode
    (no BEGIN/ROLLBACK round trips), one pooled connection per statement."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._reader = engine.execution_options(isolation_level="AUTOCOMMIT")

    async def fetch(self, statement: Executable, params: Mapping[str, Any] | None = None) -> Sequence[Row]:
        try:
            async with self._reader.connect() as conn:
                result = await conn.execute(statement, dict(params or {}))
                return result.all()
        except _UNAVAILABLE as exc:
            raise _unavailable(exc) from exc
        except sa_exc.DBAPIError as exc:
            if exc.connection_invalidated or isinstance(exc.orig, _UNAVAILABLE):
                raise _unavailable(exc) from exc
            raise


def _unavailable(exc: BaseException) -> ServiceUnavailable:
    log.warning("robust database unavailable: %s", type(exc).__name__)
    return ServiceUnavailable()


@dataclass(frozen=True)
class Viewer:
    """Who is asking. Today every caller may see every affiliate ("allow all"); the security
    issue narrows these three methods and nothing else."""

    subject: str | None = None

    def visible_affiliate_ids(self, affiliate_ids: Iterable[int]) -> list[int]:
        """The subset of ``affiliate_ids`` this viewer may read."""
        return list(affiliate_ids)

    def affiliate_predicate(self, column: ColumnElement[Any]) -> ColumnElement[bool] | None:
        """A SQL condition on an affiliate id column for list queries; None means all rows."""
        return None

    def may_run_validation(self, affiliate_id: int) -> bool:
        return True


class DataAccess:
    """``Database`` seen through a ``Viewer``: what every loader and resolver calls."""

    def __init__(self, database: Database, viewer: Viewer) -> None:
        self.database = database
        self.viewer = viewer

    async def for_affiliates(
        self, statement: Executable, affiliate_ids: Iterable[int], **params: Any
    ) -> Sequence[Row]:
        """Run a statement keyed by ``:ids`` (affiliate ids), restricted to visible ones."""
        visible = self.viewer.visible_affiliate_ids(affiliate_ids)
        if not visible:
            return []
        return await self.database.fetch(statement, {"ids": visible, **params})

    async def listing(self, statement: Executable, **params: Any) -> Sequence[Row]:
        """Run a list query; the caller built it with ``scoped`` so the viewer's predicate applies."""
        return await self.database.fetch(statement, params)

    def scoped(self, column: ColumnElement[Any]) -> list[ColumnElement[bool]]:
        predicate = self.viewer.affiliate_predicate(column)
        return [] if predicate is None else [predicate]

    def visible_rows(self, rows: Sequence[Row], attribute: str = "affiliate_id") -> list[Row]:
        """Rows fetched by another key (a validation id), kept only when their affiliate is visible."""
        visible = set(self.viewer.visible_affiliate_ids({getattr(r, attribute) for r in rows}))
        return [r for r in rows if getattr(r, attribute) in visible]

    async def global_state(self, statement: Executable, **params: Any) -> Sequence[Row]:
        """Data about the system, not an affiliate (ETL runs)."""
        return await self.database.fetch(statement, params)
