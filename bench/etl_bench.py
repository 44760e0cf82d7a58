"""ETL benchmark at the strategy's scale: first load, --full, a 15-minute cycle, an idle cycle.

    .venv/bin/python -m bench.etl_bench [--admin-url postgresql://postgres@127.0.0.1:5432/postgres]
                                        [--scale seed] [--reuse-operation] [--reuse-robust]

It generates (or reuses) the operation database ``fature_bench_operation`` at the given
scale, migrates a fresh robust database ``fature_bench_robust``, and measures, in this one
process: the first load, a ``--full`` recompute, an incremental cycle carrying 15 minutes of
seed-rate activity (~10k bets, ~1.5k deposits, ~50 referrals, ~200 status changes), and a
cycle with nothing new. Prints the figures as a Markdown table (paste into BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import resource
import time

import asyncpg

from db import migrate
from db.settings import Settings
from etl.sync import run_cycle

# One 15-minute slice of the seed operator's activity, written "now": ~10k bets in sessions
# of 15 bets (~670 players), 1.5k deposits by 1,000 users, 50 new referred users, 200 status
# changes of older deposits. The bench runs its cycles back to back, so the slice's bets are
# dated within the last 5 minutes: the source contract lets a row become visible at most 5
# minutes after its timestamp, and bets (append-only) are extracted by criado_em. Dating them
# up to 15 minutes back, as an earlier version did, made rows appear behind the previous
# cycle's cursor minus the 10-minute overlap, which no contract-abiding source does
# (deposits are extracted by atualizado_em, set to now()).
LIVE_ACTIVITY = """
CREATE TEMP TABLE bench_players AS
SELECT array_agg(user_id ORDER BY id) AS ids FROM (SELECT id, user_id FROM tracked ORDER BY id LIMIT 100000) t;
CREATE TEMP TABLE bench_affiliates AS
SELECT array_agg(id ORDER BY id) AS ids FROM (SELECT id FROM cadastro WHERE afiliado ORDER BY id LIMIT 400) a;

INSERT INTO cadastro (id, nome, email, telefone, afiliado, status, criado_em, atualizado_em)
SELECT (SELECT max(id) FROM cadastro) + g, 'Bench User ' || g, NULL, NULL, false, 'ativo', now(), now()
FROM generate_series(1, 50) g;

INSERT INTO tracked (id, user_id, afiliado_id, criado_em, atualizado_em)
SELECT (SELECT max(id) FROM tracked) + c.g, c.id, a.ids[1 + (c.g * 7) % cardinality(a.ids)], now(), now()
FROM (SELECT id, row_number() OVER (ORDER BY id) AS g FROM cadastro
      WHERE nome LIKE 'Bench User %' AND id NOT IN (SELECT user_id FROM tracked)) c, bench_affiliates a;

INSERT INTO depositos (id, user_id, valor, status, criado_em, atualizado_em)
SELECT (SELECT max(id) FROM depositos) + g, p.ids[1 + ((g % 1000) * 131) % cardinality(p.ids)], 20 + (g % 200),
       'aprovado', now() - (g % 900) * interval '1 second', now()
FROM generate_series(1, 1500) g, bench_players p;

UPDATE depositos SET status = CASE status WHEN 'pendente' THEN 'aprovado' ELSE 'cancelado' END,
                     atualizado_em = now()
WHERE id IN (SELECT id FROM depositos WHERE status <> 'cancelado' AND criado_em < now() - interval '1 day'
             ORDER BY id LIMIT 200);

INSERT INTO casino_bets_v (id, user_id, jogo, valor_aposta, valor_premio, criado_em)
SELECT (SELECT max(id) FROM casino_bets_v) + g, p.ids[1 + ((g / 15) * 37) % cardinality(p.ids)], 'bench',
       1 + (g % 50), CASE WHEN g % 3 = 0 THEN 2 * (1 + (g % 50)) ELSE 0 END,
       now() - (g % 300) * interval '1 second'
FROM generate_series(1, 10000) g, bench_players p;
"""


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def admin(url: str, sql: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def table_sizes(url: str) -> dict[str, int]:
    conn = await asyncpg.connect(url)
    try:
        return {
            t: await conn.fetchval(f"SELECT count(*) FROM {t}")
            for t in ("cadastro", "tracked", "depositos", "saque", "casino_bets_v")
        }
    finally:
        await conn.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--scale", default="seed")
    parser.add_argument("--reuse-operation", action="store_true")
    parser.add_argument(
        "--reuse-robust", action="store_true",
        help="keep the loaded robust database: measure only the idle and 15-minute cycles",
    )
    args = parser.parse_args()
    base = args.admin_url.rsplit("/", 1)[0]
    op_url, robust_url = f"{base}/fature_bench_operation", f"{base}/fature_bench_robust"

    if not args.reuse_operation:
        from demo.generator import seed_operation_database

        await admin(args.admin_url, "DROP DATABASE IF EXISTS fature_bench_operation WITH (FORCE)")
        await admin(args.admin_url, "CREATE DATABASE fature_bench_operation")
        started = time.perf_counter()
        report = await seed_operation_database(op_url, scale=args.scale, seed=42, force=True)
        print(f"seed {args.scale}: {time.perf_counter() - started:.1f} s, {report.rows}")
    if not args.reuse_robust:
        await admin(args.admin_url, "DROP DATABASE IF EXISTS fature_bench_robust WITH (FORCE)")
        await admin(args.admin_url, "CREATE DATABASE fature_bench_robust")
    await asyncio.to_thread(migrate.upgrade, robust_url)
    settings = Settings(database_url=robust_url, operation_database_url=op_url, _env_file=None)
    sizes = await table_sizes(op_url)

    rows = []

    async def wal_position() -> str:
        conn = await asyncpg.connect(robust_url)
        try:
            return await conn.fetchval("SELECT pg_current_wal_lsn()::text")
        finally:
            await conn.close()

    async def wal_since(start: str) -> float:
        conn = await asyncpg.connect(robust_url)
        try:
            return float(await conn.fetchval("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::text::pg_lsn)", start))
        finally:
            await conn.close()

    async def measure(label: str, **kw: object) -> None:
        wal_start = await wal_position()
        started = time.perf_counter()
        result = await run_cycle(settings, robust_url, op_url, **kw)  # type: ignore[arg-type]
        elapsed = time.perf_counter() - started
        wal_mb = await wal_since(wal_start) / 2**20  # the whole server's WAL, this cycle's mostly
        read = sum(result.rows_read.values())
        rows.append((label, elapsed, read, result.rows_read, result.rows_written, rss_mb()))
        print(
            f"{label}: {elapsed:.3f} s, rows read {read:,} {result.rows_read}, "
            f"written {result.rows_written}, peak RSS {rss_mb():.0f} MB, WAL {wal_mb:,.0f} MB, "
            f"steps {result.step_seconds}",
            flush=True,
        )

    if not args.reuse_robust:
        await measure("first load (empty robust database)")
        await measure("full recompute (--full)", full=True)
    await measure("idle cycle (nothing new)")
    idle = []
    for _ in range(5):
        started = time.perf_counter()
        await run_cycle(settings, robust_url, op_url)
        idle.append(time.perf_counter() - started)
    live = []
    for n in range(3):
        await admin(op_url, LIVE_ACTIVITY)
        before = len(rows)
        await measure(f"incremental cycle {n + 1}, 15 minutes of seed-rate activity")
        live.append(rows[before][1])

    print()
    print(
        f"machine: {platform.node()} {platform.machine()}, {platform.processor() or ''} "
        f"Python {platform.python_version()}"
    )
    print(f"operation database sizes: {sizes}")
    print("| cycle | seconds | rows read from the operation DB | peak RSS (MB) |")
    print("|---|---|---|---|")
    for label, elapsed, read, _, _, rss in rows:
        print(f"| {label} | {elapsed:.3f} | {read:,} | {rss:.0f} |")
    idle.sort()
    print(f"| idle cycle, median of 5 | {idle[2]:.3f} | | |")
    live.sort()
    print(f"| 15-minute cycle, median of 3 | {live[1]:.3f} | | |")


if __name__ == "__main__":
    asyncio.run(main())
