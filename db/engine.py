"""Engines and connections to the robust and operation databases."""

from __future__ import annotations

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from db.settings import async_url, masked_url, plain_url


class DatabaseUnavailable(RuntimeError):
    """A database could not be reached; the message names it with the password masked."""


def make_engine(url: str, *, pool_size: int = 10, echo: bool = False) -> AsyncEngine:
    return create_async_engine(
        async_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_recycle=1800,
        echo=echo,
        # A database that stops answering must fail requests, not hang them; a dropped
        # connection is discarded by the pool on its first error and the next one reconnects.
        connect_args={"timeout": 5, "command_timeout": 30},
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
