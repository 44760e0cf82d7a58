"""The test PostgreSQL: its admin URL, database URLs, and the operation database's DDL."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import asyncpg

ADMIN_URL = os.environ.get("FATURE_TEST_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
OPERATION_SQL = Path(__file__).resolve().parents[2] / "db" / "sql" / "operation_db.sql"


def db_url(name: str) -> str:
    """The URL of database ``name`` on the test server."""
    base, _, _ = ADMIN_URL.rpartition("/")
    return f"{base}/{name}"


async def admin(sql: str) -> None:
    """Run ``sql`` on the test server's admin database (CREATE/DROP DATABASE)."""
    conn = await asyncpg.connect(ADMIN_URL)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def new_robust_database(template: str) -> str:
    """A fresh robust database, a copy of the migrated ``template``; its URL."""
    name = f"fature_r_{uuid.uuid4().hex[:10]}"
    await admin(f"CREATE DATABASE {name} TEMPLATE {template}")
    return db_url(name)


async def new_operation_database() -> str:
    """A fresh, empty operation database with the source contract's tables; its URL."""
    name = f"fature_o_{uuid.uuid4().hex[:10]}"
    await admin(f"CREATE DATABASE {name}")
    url = db_url(name)
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(OPERATION_SQL.read_text())
    finally:
        await conn.close()
    return url


async def drop_database(url: str) -> None:
    await admin(f"DROP DATABASE IF EXISTS {url.rsplit('/', 1)[1]} WITH (FORCE)")
