"""The test PostgreSQL: its admin URL, database URLs, and the operation database's DDL."""

from __future__ import annotations

import os
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
