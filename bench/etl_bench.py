"""ETL benchmark at the strategy's scale: first load, --full, a 15-minute cycle, an idle cycle.

    .venv/bin/python -m bench.etl_bench [--admin-url postgresql://postgres@127.0.0.1:5432/postgres]
                                        [--scale seed] [--reuse-operation] [--reuse-robust]

It generates (or reuses) the operation database of the given scale, migrates a fresh robust
database beside it (``bench_databases``: ``fature_bench_operation`` and ``fature_bench_robust``
at seed scale, ``fature_bench3_*`` at seed3, so each scale keeps its own pair), and measures,
in this one process: the first load, a ``--full`` recompute, three incremental cycles each carrying 15
minutes of seed-rate activity (~10k bets, ~1.5k deposits, ~50 referrals, ~200 status changes),
and cycles with nothing new. Prints the figures as a Markdown table (paste into BENCHMARKS.md).
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

# One 15-minute slice of the seed operator's activity: ~10k bets in sessions of 15 bets (~670
# players), 1.5k deposits by 1,000 users, 50 new referred users, 200 status changes of older
# deposits. The bench runs its cycles back to back, so each slice lives on a simulated clock:
# it covers the 15 minutes after the newest row already in the source (its rows are dated, and
# their atualizado_em set, within that window). The ETL reads only the source's timestamps,
# never the clock, so each cycle sees exactly what a cycle 15 minutes after the previous one
# would: the new slice, plus the previous slice's last 10 minutes as the overlap re-read.
# (Dating every slice "now" piled all slices of one run into one overlap window; dating bets
# up to 15 minutes before "now" put some behind the previous cursor minus the overlap, which no
# source that honours the contract's 5-minute visibility lag does.)
LIVE_ACTIVITY = """
CREATE TEMP TABLE bench_players AS
SELECT array_agg(user_id ORDER BY id) AS ids FROM (SELECT id, user_id FROM tracked ORDER BY id LIMIT 100000) t;
CREATE TEMP TABLE bench_affiliates AS
SELECT array_agg(id ORDER BY id) AS ids FROM (SELECT id FROM cadastro WHERE afiliado ORDER BY id LIMIT 400) a;
-- The slice's end: 15 minutes after the newest source row.
CREATE TEMP TABLE bench_clock AS
SELECT greatest((SELECT max(criado_em) FROM casino_bets_v), (SELECT max(atualizado_em) FROM depositos),
                (SELECT max(atualizado_em) FROM cadastro), (SELECT max(atualizado_em) FROM tracked))
       + interval '15 minutes' AS s;

INSERT INTO cadastro (id, nome, email, telefone, afiliado, status, criado_em, atualizado_em)
SELECT (SELECT max(id) FROM cadastro) + g, 'Bench User ' || g, NULL, NULL, false, 'ativo',
       k.s - (g * 17 % 900) * interval '1 second', k.s - (g * 17 % 900) * interval '1 second'
FROM generate_series(1, 50) g, bench_clock k;

INSERT INTO tracked (id, user_id, afiliado_id, criado_em, atualizado_em)
SELECT (SELECT max(id) FROM tracked) + c.g, c.id, a.ids[1 + (c.g * 7) % cardinality(a.ids)],
       c.criado_em, c.criado_em
FROM (SELECT id, criado_em, row_number() OVER (ORDER BY id) AS g FROM cadastro
      WHERE nome LIKE 'Bench User %' AND id NOT IN (SELECT user_id FROM tracked)) c, bench_affiliates a;

INSERT INTO depositos (id, user_id, valor, status, criado_em, atualizado_em)
SELECT (SELECT max(id) FROM depositos) + g, p.ids[1 + ((g % 1000) * 131) % cardinality(p.ids)], 20 + (g % 200),
       'aprovado', k.s - (g % 900) * interval '1 second', k.s - (g % 900) * interval '1 second'
FROM generate_series(1, 1500) g, bench_players p, bench_clock k;

UPDATE depositos SET status = CASE status WHEN 'pendente' THEN 'aprovado' ELSE 'cancelado' END,
                     atualizado_em = (SELECT s FROM bench_clock) - (id % 900) * interval '1 second'
WHERE id IN (SELECT id FROM depositos WHERE status <> 'cancelado'
             AND criado_em < (SELECT s FROM bench_clock) - interval '1 day' ORDER BY id LIMIT 200);

INSERT INTO casino_bets_v (id, user_id, jogo, valor_aposta, valor_premio, criado_em)
SELECT (SELECT max(id) FROM casino_bets_v) + g, p.ids[1 + ((g / 15) * 37) % cardinality(p.ids)], 'bench',
       1 + (g % 50), CASE WHEN g % 3 = 0 THEN 2 * (1 + (g % 50)) ELSE 0 END,
       k.s - (g % 900) * interval '1 second'
FROM generate_series(1, 10000) g, bench_players p, bench_clock k;
"""


def bench_databases(scale: str) -> tuple[str, str]:
    """The (operation, robust) database names of ``scale``'s bench: the seed scale keeps the
    names the other benches read (bench.api_bench, bench.cluster_bench); seed3 is
    ``fature_bench3_*``, any other scale ``fature_bench_<scale>_*``."""
    prefix = {"seed": "fature_bench", "seed3": "fature_bench3"}.get(scale, f"fature_bench_{scale}")
    return f"{prefix}_operation", f"{prefix}_robust"


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
    parser.add_argument(
        "--prefix", default=None,
        help="database names <prefix>_operation and <prefix>_robust instead of the scale's "
        "(a seed-scale run that leaves the shared fature_bench_* pair alone)",
    )
    parser.add_argument("--reuse-operation", action="store_true")
    parser.add_argument(
        "--reuse-robust", action="store_true",
        help="keep the loaded robust database: measure only the idle and 15-minute cycles",
    )
    args = parser.parse_args()
    base = args.admin_url.rsplit("/", 1)[0]
    op_db, robust_db = (
        (f"{args.prefix}_operation", f"{args.prefix}_robust") if args.prefix else bench_databases(args.scale)
    )
    op_url, robust_url = f"{base}/{op_db}", f"{base}/{robust_db}"
    print(f"databases: {op_db}, {robust_db}", flush=True)

    if not args.reuse_operation:
        from demo.generator import seed_operation_database

        await admin(args.admin_url, f"DROP DATABASE IF EXISTS {op_db} WITH (FORCE)")
        await admin(args.admin_url, f"CREATE DATABASE {op_db}")
        started = time.perf_counter()
        report = await seed_operation_database(op_url, scale=args.scale, seed=42, force=True)
        print(f"seed {args.scale}: {time.perf_counter() - started:.1f} s, {report.rows}", flush=True)
    if not args.reuse_robust:
        await admin(args.admin_url, f"DROP DATABASE IF EXISTS {robust_db} WITH (FORCE)")
        await admin(args.admin_url, f"CREATE DATABASE {robust_db}")
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
    live = []
    for n in range(3):
        await admin(op_url, LIVE_ACTIVITY)
        before = len(rows)
        await measure(f"incremental cycle {n + 1}, 15 minutes of seed-rate activity")
        live.append(rows[before][1])
    # After the live cycles: the overlap window holds the last 10 minutes of the last slice.
    await measure("idle cycle (nothing new)")
    idle = []
    for _ in range(5):
        started = time.perf_counter()
        await run_cycle(settings, robust_url, op_url)
        idle.append(time.perf_counter() - started)

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
