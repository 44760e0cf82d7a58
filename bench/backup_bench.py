"""Backup and restore figures at seed scale: size and time of a complete and a lean backup, the
restore of each, and the lean restore's full recompute (the recovery time).

    .venv/bin/python -m bench.backup_bench [--robust fature_bench_robust]
        [--operation fature_bench_operation] [--dir /tmp/fature-backup-bench]

Works on a copy of the ETL-built robust database (``CREATE DATABASE ... TEMPLATE``; nobody may
be connected to it for that instant), never on it; the operation database is only read (by
the rebuild). The copies are dropped at the end. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import time
from pathlib import Path

import asyncpg

from db import migrate
from db.settings import Settings
from etl.backups import backup, restore

ADMIN = os.environ.get("FATURE_TEST_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def url_of(name: str) -> str:
    return f"{ADMIN.rpartition('/')[0]}/{name}"


async def admin(sql: str) -> None:
    conn = await asyncpg.connect(ADMIN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def database_size(name: str) -> int:
    conn = await asyncpg.connect(ADMIN)
    try:
        return int(await conn.fetchval("SELECT pg_database_size($1)", name))
    finally:
        await conn.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--robust", default="fature_bench_robust")
    parser.add_argument("--operation", default="fature_bench_operation")
    parser.add_argument("--dir", default="/tmp/fature-backup-bench")
    args = parser.parse_args()
    directory = Path(args.dir)
    shutil.rmtree(directory, ignore_errors=True)
    source, complete_copy, lean_copy = "bench_backup_src", "bench_backup_complete", "bench_backup_lean"
    for name in (source, complete_copy, lean_copy):
        await admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    await admin(f"CREATE DATABASE {source} TEMPLATE {args.robust}")
    # the code's schema (a restore is rebuilt by today's ETL)
    await asyncio.to_thread(migrate.upgrade, url_of(source))
    settings = Settings(database_url=url_of(source), operation_database_url=url_of(args.operation),
                        backup_dir=directory, etl_scheduler_enabled=False, _env_file=None)
    figures: dict[str, object] = {"database_bytes": await database_size(source), "load": os.getloadavg()}
    try:
        complete = await backup(settings, url_of(source), lean=False, rotation=False)
        lean = await backup(settings, url_of(source), lean=True, rotation=False)
        figures["complete"] = {"bytes": complete.manifest.size_bytes, "seconds": complete.manifest.duration_s}
        figures["lean"] = {"bytes": lean.manifest.size_bytes, "seconds": lean.manifest.duration_s}

        started = time.monotonic()
        recovered = await restore(settings, complete.path, url_of(complete_copy), None)
        figures["complete"]["restore_seconds"] = round(time.monotonic() - started, 1)  # type: ignore[index]
        figures["complete"]["restore_only_seconds"] = recovered.restore.restore_s  # type: ignore[index]

        started = time.monotonic()
        rebuilt = await restore(settings, lean.path, url_of(lean_copy), url_of(args.operation))
        figures["lean"]["recovery_seconds"] = round(time.monotonic() - started, 1)  # type: ignore[index]
        figures["lean"]["restore_only_seconds"] = rebuilt.restore.restore_s  # type: ignore[index]
        assert rebuilt.rebuild is not None
        figures["lean"]["rebuild_seconds"] = round(rebuilt.rebuild.duration_s, 1)  # type: ignore[index]
        figures["load_after"] = os.getloadavg()
    finally:
        for name in (source, complete_copy, lean_copy):
            await admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        shutil.rmtree(directory, ignore_errors=True)
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
