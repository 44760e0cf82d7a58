"""Where an ETL cycle spends its time, statement by statement, without changing anything.

    .venv/bin/python -m bench.etl_profile [--repeat 3] [--min-ms 10] [--live] [--full]

Runs cycles against the benchmark databases of ``bench.etl_bench`` (they must exist) and
rolls each one back at its very end (the ``fail_after="commit"`` hook), so every repetition
sees the same state. ``--live`` first appends one more 15-minute slice of seed-rate activity
to the operation database (it stays there). Prints each cycle's step times and its slowest
SQL statements (asyncpg's query logger), then the median cycle time.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import asyncpg

from bench.etl_bench import LIVE_ACTIVITY, admin
from db.settings import Settings
from etl import sync


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--min-ms", type=float, default=10.0)
    parser.add_argument("--live", action="store_true")
    parser.add_argument("--full", action="store_true", help="profile a --full recompute (about two minutes)")
    parser.add_argument(
        "--explain", type=float, default=None, metavar="MS",
        help="log EXPLAIN ANALYZE of statements slower than MS to the server log (auto_explain)",
    )
    args = parser.parse_args()
    op_url = f"{args.base_url}/fature_bench_operation"
    robust_url = f"{args.base_url}/fature_bench_robust"
    settings = Settings(database_url=robust_url, operation_database_url=op_url, _env_file=None)
    if args.live:
        await admin(op_url, LIVE_ACTIVITY)

    slow: list[tuple[float, str]] = []
    real_connect = sync.connect

    async def traced_connect(url: str, **kw: object) -> asyncpg.Connection:
        conn = await real_connect(url, **kw)  # type: ignore[arg-type]
        if url == robust_url:
            if args.explain is not None:
                await conn.execute(
                    "LOAD 'auto_explain'; SET auto_explain.log_analyze = on; "
                    "SET auto_explain.log_buffers = on; SET auto_explain.log_timing = off; "
                    f"SET auto_explain.log_min_duration = {args.explain}"
                )
            conn.add_query_logger(
                lambda q: slow.append((q.elapsed * 1000, " ".join(q.query.split())[:160]))
            )
        return conn

    sync.connect = traced_connect
    times = []
    for n in range(args.repeat):
        slow.clear()
        started = time.perf_counter()
        try:
            await sync.run_cycle(settings, robust_url, op_url, full=args.full, fail_after="commit")
        except sync.InjectedFailure:
            pass
        elapsed = time.perf_counter() - started
        times.append(elapsed)
        print(f"cycle {n + 1}: {elapsed:.3f} s (rolled back)")
        small = [ms for ms, _ in slow if ms < args.min_ms]
        print(
            f"  {len(slow)} statements, {sum(ms for ms, _ in slow) / 1000:.3f} s in SQL; "
            f"{len(small)} under {args.min_ms:g} ms took {sum(small) / 1000:.3f} s"
        )
        for ms, sql in sorted(slow, reverse=True):
            if ms >= args.min_ms:
                print(f"  {ms:8.1f} ms  {sql}")
    print(f"median {statistics.median(times):.3f} s over {len(times)}")


if __name__ == "__main__":
    asyncio.run(main())
