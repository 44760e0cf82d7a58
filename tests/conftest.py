"""Shared fixtures: real PostgreSQL databases, one robust and one operation database a test.

The robust schema is migrated once per session into a template database; each test gets a
copy of it (CREATE DATABASE ... TEMPLATE), which is fast and fully isolated.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from db import migrate
from db.settings import Settings

ADMIN_URL = os.environ.get("FATURE_TEST_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
OPERATION_SQL = Path(__file__).resolve().parents[1] / "db" / "sql" / "operation_db.sql"


def _db_url(name: str) -> str:
    base, _, _ = ADMIN_URL.rpartition("/")
    return f"{base}/{name}"


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(ADMIN_URL)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def robust_template() -> Iterator[str]:
    name = f"fature_tpl_{uuid.uuid4().hex[:8]}"
    asyncio.run(_admin(f"CREATE DATABASE {name}"))
    migrate.upgrade(_db_url(name))
    yield name
    asyncio.run(_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


@pytest.fixture
async def robust_url(robust_template: str) -> AsyncIterator[str]:
    name = f"fature_r_{uuid.uuid4().hex[:10]}"
    await _admin(f"CREATE DATABASE {name} TEMPLATE {robust_template}")
    yield _db_url(name)
    await _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
async def operation_url() -> AsyncIterator[str]:
    name = f"fature_o_{uuid.uuid4().hex[:10]}"
    await _admin(f"CREATE DATABASE {name}")
    url = _db_url(name)
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(OPERATION_SQL.read_text())
    finally:
        await conn.close()
    yield url
    await _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def settings(robust_url: str, operation_url: str) -> Settings:
    return Settings(
        database_url=robust_url,
        operation_database_url=operation_url,
        etl_scheduler_enabled=False,
        _env_file=None,
    )
