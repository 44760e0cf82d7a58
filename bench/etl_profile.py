"""Where an ETL cycle spends its time, statement by statement, without changing anything.

    .venv/bin/python -m bench.etl_profile [--scale seed] [--repeat 3] [--min-ms 10] [--live] [--full]

Runs cycles against the benchmark databases of ``bench.etl_bench`` at ``--scale`` (they must
exist: ``bench.etl_bench.bench_databases``) and
rolls each one back at its very end (the ``fail_after="commit"`` hook), so every repetition
sees the same state. ``--live`` first appends one more 15-minute slice of seed-rate activity
to the operation database (it stays there). Prints each cycle's step times and its slowest
SQL statements (asyncpg's query logger, each with the step it ran in), then the median cycle
time and each step's median.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import asyncpg

from bench.etl_bench import LIVE_ACTIVITY, admin, bench_databases
from db.settings import Settings
from etl import sync
from etl.cycle import Cycle
from etl.pipeline import Step


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--scale", default="seed", help="whose bench databases (bench.etl_bench --scale)")
    parser.add_argument("--prefix", default=None, help="databases <prefix>_operation/_robust (bench.etl_bench --prefix)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--min-ms", type=float, default=10.0)
    parser.add_argument("--live", action="store_true")
    parser.add_argument("--full", action="store_true", help="profile a --full recompute (about two minutes)")
    parser.add_argument(
        "--explain", type=float, default=None, metavar="MS",
        help="log EXPLAIN ANALYZE of statements slower than MS to the server log (auto_explain)",
    )
    args = parser.parse_args()
    op_db, robust_db = (
        (f"{args.prefix}_operation", f"{args.prefix}_robust") if args.prefix else bench_databases(args.scale)
    )
    op_url, robust_url = f"{args.base_url}/{op_db}", f"{args.base_url}/{robust_db}"
    settings = Settings(database_url=robust_url, operation_database_url=op_url, _env_file=None)
    if args.live:
        await admin(op_url, LIVE_ACTIVITY)

    slow: list[tuple[float, str, str]] = []
    real_connect = sync.connect
    current = {"step": sync.STEPS[0]}  # the step whose statements the logger is seeing

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
                lambda q: slow.append((q.elapsed * 1000, current["step"], " ".join(q.query.split())[:160]))
            )
        return conn

    step_times: dict[str, list[float]] = {name: [] for name in sync.STEPS}
    seconds: dict[str, float] = {}

    async def after_step(step: Step, cycle: Cycle, mode: str) -> None:
        seconds.update(cycle.result.step_seconds)
        await asyncio.sleep(0)  # asyncpg calls the logger soon after a statement: let it, first
        following = sync.STEPS.index(step.name) + 1
        current["step"] = sync.STEPS[min(following, len(sync.STEPS) - 1)]

    sync.connect = traced_connect
    times = []
    for n in range(args.repeat):
        slow.clear()
        seconds.clear()
        current["step"] = sync.STEPS[0]
        started = time.perf_counter()
        try:
            await sync.run_cycle(
                settings, robust_url, op_url, full=args.full, fail_after="commit", after_step=after_step
            )
        except sync.InjectedFailure:
            pass
        elapsed = time.perf_counter() - started
        times.append(elapsed)
        for name, value in seconds.items():
            step_times[name].append(value)
        print(f"cycle {n + 1}: {elapsed:.3f} s (rolled back); steps {seconds}")
        small = [ms for ms, _, _ in slow if ms < args.min_ms]
        print(
            f"  {len(slow)} statements, {sum(ms for ms, _, _ in slow) / 1000:.3f} s in SQL; "
            f"{len(small)} under {args.min_ms:g} ms took {sum(small) / 1000:.3f} s"
        )
        for ms, step_name, sql in sorted(slow, reverse=True):
            if ms >= args.min_ms:
                print(f"  {ms:8.1f} ms  [{step_name}] {sql}")
    print(f"median {statistics.median(times):.3f} s over {len(times)}")
    print("step medians (s): " + ", ".join(
        f"{name} {statistics.median(values):.3f}" for name, values in step_times.items() if values
    ))


if __name__ == "__main__":
    asyncio.run(main())
