"""Engines and connections to the robust and operation databases."""

from __future__ import annotations

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from db.settings import async_url, masked_url, plain_url


class DatabaseUnavailable(RuntimeError):
    """A database could not be reached; the message names it with the password masked."""


TIMEOUT_MESSAGE = ("The query took longer than the server allows; ask for less (a shorter period, "
                   "a smaller page) or try again later.")


class QueryTimeout(DatabaseUnavailable):
    """A statement ran longer than its server-side ``statement_timeout`` and PostgreSQL
    cancelled it (SQLSTATE 57014): clients get the code TIMEOUT (HTTP 503)."""

    code = "TIMEOUT"

    def __init__(self, message: str = TIMEOUT_MESSAGE) -> None:
        super().__init__(message)


QUERY_CANCELED = "57014"  # SQLSTATE of a statement cancelled by statement_timeout (or a cancel request)


def is_timeout(exc: BaseException) -> bool:
    """A statement cancelled by the server, raw (asyncpg) or wrapped (SQLAlchemy's DBAPIError)."""
    if isinstance(exc, asyncpg.exceptions.QueryCanceledError):
        return True
    orig = getattr(exc, "orig", None)
    return orig is not None and getattr(orig, "sqlstate", None) == QUERY_CANCELED


def timeout_ms(seconds: float) -> int:
    """A timeout setting as PostgreSQL's statement_timeout milliseconds (never 0: 0 is none)."""
    return max(1, round(seconds * 1000))


def client_timeout(seconds: float) -> float:
    """The client-side (asyncpg ``command_timeout``) limit for a server-side timeout of
    ``seconds``: a bit above it, so the server cancels first and says why."""
    return seconds + 2.0


def make_engine(
    url: str,
    *,
    pool_size: int = 10,
    echo: bool = False,
    statement_timeout_ms: int | None = None,
    command_timeout: float = 30.0,
) -> AsyncEngine:
    """``statement_timeout_ms``: PostgreSQL's statement_timeout of every connection (the API's
    read timeout; longer paths raise it with ``SET LOCAL``); ``command_timeout``: asyncpg's
    client-side limit, to be a bit above the longest server-side timeout used on the engine."""
    connect_args: dict[str, object] = {"timeout": 5, "command_timeout": command_timeout}
    if statement_timeout_ms is not None:
        connect_args["server_settings"] = {"statement_timeout": str(statement_timeout_ms)}
    return create_async_engine(
        async_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_recycle=1800,
        echo=echo,
        hide_parameters=True,  # an error's text never carries the bound values (tokens, search terms)
        # A database that stops answering must fail requests, not hang them; a dropped
        # connection is discarded by the pool on its first error and the next one reconnects.
        connect_args=connect_args,
    )


async def connect(url: str, *, connect_timeout: float = 10.0) -> asyncpg.Connection:
    """A raw asyncpg connection (the ETL's bulk path), with a clear error when unreachable."""
    try:
        return await asyncpg.connect(plain_url(url), timeout=connect_timeout)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        raise DatabaseUnavailable(f"cannot connect to {masked_url(url)}: {describe(exc)}") from exc


def describe(exc: BaseException) -> str:
    """One line about a connection error, without internals."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]
