"""The transactions archive at seed scale: the job's time per month, the online size before
and after archiving half of the seed's months, the files' sizes, and a restore's time.

    .venv/bin/python -m bench.archive_bench [--base-url postgresql://postgres@127.0.0.1:5432]
        [--template fature_bench_robust] [--now 2026-12-05T12:00:00-03:00] [--retention 7]
        [--restore 2026-03]

Works on a copy (``CREATE DATABASE ... TEMPLATE``) migrated to head, dropped at the end; the
template is never written. Prints Markdown (paste into BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from datetime import datetime
from pathlib import Path

import asyncpg

from db import clock, migrate
from db.settings import Settings
from etl.archive import parse_month, restore_month, run_archive

SIZES = """
SELECT c.relname, pg_total_relation_size(c.oid) AS bytes, c.reltuples::bigint AS rows
FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = 'affiliate_financial_transactions'::regclass ORDER BY 1
"""


async def sizes(url: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return list(await conn.fetch(SIZES))
    finally:
        await conn.close()


async def admin(base: str, sql: str) -> None:
    conn = await asyncpg.connect(f"{base}/postgres")
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def mib(n: float) -> str:
    return f"{n / 2**20:,.1f} MiB"


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--template", default="fature_bench_robust")
    parser.add_argument("--now", default="2026-12-05T12:00:00-03:00")
    parser.add_argument("--retention", type=int, default=7)
    parser.add_argument("--restore", default="2026-03")
    args = parser.parse_args()
    copy = f"archive_bench_{os.getpid()}"
    url = f"{args.base_url}/{copy}"
    started = time.perf_counter()
    await admin(args.base_url, f"CREATE DATABASE {copy} TEMPLATE {args.template}")
    print(f"copy of {args.template}: {time.perf_counter() - started:.1f} s")
    try:
        await asyncio.to_thread(migrate.upgrade, url)
        clock.set_now(datetime.fromisoformat(args.now))
        with tempfile.TemporaryDirectory(prefix="fature-archive-") as folder:
            settings = Settings(database_url=url, transactions_retention_months=args.retention,
                                archive_dir=Path(folder), _env_file=None)
            before = await sizes(url)
            started = time.perf_counter()
            result = await run_archive(settings, url, trigger="bench")
            total = time.perf_counter() - started
            after = await sizes(url)
            rows = {r["relname"][-6:]: r["rows"] for r in before}
            print(f"\nnow {args.now}, retention {args.retention} months: "
                  f"{len(result.months)} of {len(before)} months archived in {total:.1f} s\n")
            print("| month | rows | archive job | file (gzip CSV) | online size before |")
            print("|---|---:|---:|---:|---:|")
            online = {r["relname"][-6:]: r["bytes"] for r in before}
            for month in result.months:
                key = f"{month:%Y%m}"
                file = Path(folder) / f"affiliate_financial_transactions-{month:%Y-%m}.csv.gz"
                print(f"| {month:%Y-%m} | {rows[key]:,} | {result.month_seconds[f'{month:%Y-%m}']:.2f} s "
                      f"| {mib(file.stat().st_size)} | {mib(online[key])} |")
            print(f"\nonline partitions: {len(before)} -> {len(after)}; "
                  f"pg_total_relation_size sum {mib(sum(r['bytes'] for r in before))} -> "
                  f"{mib(sum(r['bytes'] for r in after))}")
            month = parse_month(args.restore)
            started = time.perf_counter()
            restored = await restore_month(settings, url, month, trigger="bench")
            print(f"restore of {month:%Y-%m} ({restored:,} rows): {time.perf_counter() - started:.2f} s")
    finally:
        await admin(args.base_url, f"DROP DATABASE IF EXISTS {copy} WITH (FORCE)")


if __name__ == "__main__":
    asyncio.run(main())
