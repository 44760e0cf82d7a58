"""Cluster figures (issue 16) on a loopback cluster (tests/support/cluster.py): CPU-seconds per
answered request, ETL commit to replica and to the first fresh answer.

    .venv/bin/python -m bench.cluster_bench [--scale small] [--requests 1500] [--cycles 5]

Builds a fresh cluster (primary + streaming replica + Redis, in a temporary directory, on
free ports), seeds the operation database at ``--scale`` (``fature demo seed``) on the primary
and runs the first ETL cycle; then:

1. CPU per answered request: one ``fature serve`` process at a time, in four set-ups
   (reads on the primary or on the replica, response cache on or off), asked the dashboard
   (web/graphiql.py's DASHBOARD_QUERY, admin token) for ``--affiliates`` different affiliates
   round-robin by ``--clients`` client threads, ``--requests`` answers after a warm-up of one
   round. Measured: utime+stime (/proc/<pid>/stat) of the API process and of every process of
   each PostgreSQL server (postmaster and its children: backends, walsender/walreceiver,
   checkpointer...) before and after, divided by the answers. The machine-independent figure:
   it does not depend on how many other programs share the cores.
2. Replica lag under an ETL cycle: ``--activity`` seconds of ``fature demo simulate`` (at
   ``--rate`` events/s) then one incremental cycle, ``--cycles`` times; the replica's replay
   position sampled every 20 ms: the most WAL bytes it was behind, and the time from the
   cycle's commit (the CLI returning) until the replica holds that run.
3. Commit to the first fresh answer: the same cycles, an API process reading the replica (cache
   on) asked syncStatus every 20 ms until it shows the new run.

Prints Markdown tables (paste into BENCHMARKS.md). Nothing outside the temporary cluster is
written.
"""

from __future__ import annotations

import argparse
import threading
import time
from typing import Any

import httpx

from tests.support.cluster import Cluster, Service, free_port, process_cpu_seconds, process_tree
from web.graphiql import DASHBOARD_QUERY

SECRET = "cluster-bench-secret-0123456789abcdef012345"
SYNC_QUERY = "{ syncStatus { lastSuccessfulRun { runId } } }"


def spawn_api(cluster: Cluster, env: dict[str, str], name: str, *, replica: bool, cache: bool) -> Service:
    port = free_port()
    api_env = {**env, "FATURE_ETL_SCHEDULER_ENABLED": "false",
               "FATURE_CACHE_ENABLED": "true" if cache else "false"}
    if replica:
        api_env["FATURE_DATABASE_READ_URLS"] = cluster.replica.url("fature")
    api = cluster.spawn(name, ["serve", "--host", "127.0.0.1", "--port", str(port)], api_env, port=port)
    api.wait_http("/healthz")
    return api


def ask_all(api: Service, token: str, bodies: list[dict[str, Any]], clients: int) -> int:
    """Every body once, spread over ``clients`` threads; the number of good answers."""
    good = [0] * clients

    def loop(n: int) -> None:
        with httpx.Client(headers={"authorization": f"Bearer {token}"}, timeout=30) as client:
            for body in bodies[n::clients]:
                answer = client.post(api.base_url + "/graphql", json=body)
                if answer.status_code == 200 and not answer.json().get("errors"):
                    good[n] += 1

    threads = [threading.Thread(target=loop, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(good)


def cpu_per_request(cluster: Cluster, env: dict[str, str], token: str, ids: list[int], args: Any) -> list[str]:
    rows = []
    for replica in (False, True):
        for cache in (False, True):
            label = f"{'replica' if replica else 'primary'}, cache {'on' if cache else 'off'}"
            api = spawn_api(cluster, env, f"bench-{'r' if replica else 'p'}{'c' if cache else 'u'}",
                            replica=replica, cache=cache)
            try:
                bodies = [{"query": DASHBOARD_QUERY, "variables": {"id": str(ids[i % len(ids)])}}
                          for i in range(args.requests)]
                ask_all(api, token, bodies[: len(ids)], args.clients)  # warm-up: one round
                api_pids = process_tree(api.proc.pid)
                primary_pids, replica_pids = cluster.primary.server_pids(), cluster.replica.server_pids()
                before = (process_cpu_seconds(api_pids), process_cpu_seconds(primary_pids),
                          process_cpu_seconds(replica_pids))
                started = time.perf_counter()
                answered = ask_all(api, token, bodies, args.clients)
                wall = time.perf_counter() - started
                # Backends started during the run count too (a pool that grew).
                primary_pids, replica_pids = cluster.primary.server_pids(), cluster.replica.server_pids()
                after = (process_cpu_seconds(process_tree(api.proc.pid)), process_cpu_seconds(primary_pids),
                         process_cpu_seconds(replica_pids))
                api_ms, primary_ms, replica_ms = ((a - b) * 1000 / answered for a, b in zip(after, before, strict=True))
                rows.append(f"| {label} | {answered} | {answered / wall:.0f} | {api_ms:.2f} | {primary_ms:.2f} "
                            f"| {replica_ms:.2f} | {api_ms + primary_ms + replica_ms:.2f} |")
                print(rows[-1], flush=True)
            finally:
                api.stop()
    return rows


def wal_behind(cluster: Cluster) -> int:
    return int(cluster.primary.psql(
        "SELECT coalesce(max(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)), 0)::bigint FROM pg_stat_replication"))


def sample_lag(cluster: Cluster, peak: list[int], done: threading.Event) -> None:
    while not done.is_set():
        peak[0] = max(peak[0], wal_behind(cluster))
        time.sleep(0.02)


def watch(cluster: Cluster, api: Service, token: str, after: int, seen: dict[str, float],
          done: threading.Event) -> None:
    """Record (time.time()) when the replica first holds a run above ``after`` and when the API
    first answers with one."""
    with httpx.Client(headers={"authorization": f"Bearer {token}"}, timeout=30) as client:
        while not done.is_set() and len(seen) < 2:
            if "replica" not in seen and int(cluster.replica.psql(
                    "SELECT coalesce(max(id), 0) FROM etl.runs WHERE status = 'success'", "fature")) > after:
                seen["replica"] = time.time()
            if "answer" not in seen:
                body = client.post(api.base_url + "/graphql", json={"query": SYNC_QUERY}).json()
                if int(body["data"]["syncStatus"]["lastSuccessfulRun"]["runId"]) > after:
                    seen["answer"] = time.time()
            time.sleep(0.01)


def cycles(cluster: Cluster, env: dict[str, str], token: str, args: Any) -> list[str]:
    api = spawn_api(cluster, env, "bench-fresh", replica=True, cache=True)
    rows = []
    try:
        for n in range(args.cycles):
            cluster.run_cli(["demo", "simulate", "--rate", str(args.rate), "--duration", str(args.activity)],
                            env, timeout=args.activity + 120)
            cluster.wait_replica_caught_up(120)
            before = int(cluster.primary.psql(
                "SELECT coalesce(max(id), 0) FROM etl.runs WHERE status = 'success'", "fature"))
            wal_before = cluster.primary.psql("SELECT pg_current_wal_lsn()")
            peak, done = [0], threading.Event()
            seen: dict[str, float] = {}
            threads = [threading.Thread(target=sample_lag, args=(cluster, peak, done)),
                       threading.Thread(target=watch, args=(cluster, api, token, before, seen, done))]
            for t in threads:
                t.start()
            try:
                output = cluster.run_cli(["etl", "run"], env)
                run_id = int(output.split("ETL run ", 1)[1].split()[0])
                deadline = time.time() + 60
                while len(seen) < 2 and time.time() < deadline:
                    time.sleep(0.02)
            finally:
                done.set()
                for t in threads:
                    t.join()
            finished, duration, wal = cluster.primary.psql(
                "SELECT extract(epoch FROM finished_at), extract(epoch FROM finished_at - started_at), "
                f"pg_wal_lsn_diff(pg_current_wal_lsn(), '{wal_before}') FROM etl.runs WHERE id = {run_id}",
                "fature").split("|")
            committed = float(finished)
            rows.append(f"| {n + 1} | {float(duration):.2f} | {float(wal) / 2**20:.1f} | {peak[0] / 1024:.0f} | "
                        f"{(seen['replica'] - committed) * 1000:.0f} | {(seen['answer'] - committed) * 1000:.0f} |")
            print(rows[-1], flush=True)
    finally:
        api.stop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", default="small")
    parser.add_argument("--requests", type=int, default=1500)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--affiliates", type=int, default=200)
    parser.add_argument("--cycles", type=int, default=5)
    parser.add_argument("--activity", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=100.0)
    args = parser.parse_args()
    started = time.perf_counter()
    with Cluster.start() as cluster:
        robust, operation = cluster.create_database("fature"), cluster.create_database("fature_operation")
        env = {
            "FATURE_DATABASE_URL": robust, "FATURE_OPERATION_DATABASE_URL": operation,
            "FATURE_REDIS_URL": cluster.redis_url, "FATURE_JWT_SECRET": SECRET,
            "FATURE_DATA_DIR": str(cluster.root / "fature-data"),
            "FATURE_RATE_LIMIT": "10000000/minute", "FATURE_RATE_LIMIT_BURST": "1000000/second",
            "FATURE_READY_MAX_ETL_AGE_SECONDS": "86400", "FATURE_BACKUP_ENABLED": "false",
        }
        t = time.perf_counter()
        print(cluster.run_cli(["demo", "seed", "--scale", args.scale], env, timeout=3600).strip()[-400:])
        seeded = time.perf_counter() - t
        cluster.run_cli(["db", "upgrade"], env)
        t = time.perf_counter()
        cluster.run_cli(["etl", "run"], env, timeout=3600)
        first_etl = time.perf_counter() - t
        cluster.wait_replica_caught_up(120)
        affiliates = int(cluster.primary.psql("SELECT count(*) FROM affiliates", "fature"))
        size = cluster.primary.psql("SELECT pg_size_pretty(pg_database_size('fature'))")
        ids = [int(x) for x in cluster.primary.psql(
            f"SELECT affiliate_id FROM affiliates ORDER BY md5(affiliate_id::text) LIMIT {args.affiliates}", "fature").split()]
        token = cluster.run_cli(["token", "--role", "admin", "--ttl", "2h"], env).strip()
        print(f"\nscale {args.scale}: {affiliates} affiliates, robust database {size}; seeded in {seeded:.0f} s, "
              f"first ETL run {first_etl:.0f} s\n")
        print("| reads on, response cache | answers | answers/s (wall, shared cores) | API CPU ms/answer "
              "| primary PG CPU ms/answer | replica PG CPU ms/answer | total CPU ms/answer |")
        print("|---|---|---|---|---|---|---|")
        cpu_rows = cpu_per_request(cluster, env, token, ids, args)
        print("\n| cycle | ETL cycle (s, etl.runs) | WAL written (MiB) | replica behind at most (KiB of WAL) "
              "| commit -> replica holds the run (ms) | commit -> first fresh answer via the replica (ms) |")
        print("|---|---|---|---|---|---|")
        cycle_rows = cycles(cluster, env, token, args)
        print("\n" + "\n".join(cpu_rows) + "\n\n" + "\n".join(cycle_rows))
        print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
