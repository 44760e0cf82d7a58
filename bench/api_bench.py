"""API benchmark at seed scale: one uvicorn worker against an ETL-built robust database.

    .venv/bin/python -m bench.api_bench [--base-url postgresql://postgres@127.0.0.1:5432]
        [--robust fature_bench_robust] [--operation fature_bench_operation]
        [--pgl /tmp/pgl] [--seconds 8] [--load-seconds 60] [--skip-load] [--skip-pgl]

Run ``bench.etl_bench`` first (it builds both databases). Everything runs on loopback:
Fature (``uvicorn app:create_app --factory --loop uvloop --http httptools``, one worker, no
in-process scheduler, no access log) and, side by side, PostGraphile 4 (``npm install
postgraphile@4`` in ``--pgl``, outside the repo) pointed at the same robust database. The
load generator is a separate process: asyncio connections speaking HTTP/1.1 keep-alive
directly (an httpx pool would cost the 2-core machine more CPU than the server under test).

Measured: (1) the dashboard query uncached, one client, p50/p99, for a small affiliate and
the largest; (2) its throughput at 32 clients vs PostGraphile's equivalent query; (3) the
100-affiliate list with levels, p50; (4) the old flow (a recursive query over the operation
database) vs Fature for the largest affiliate; (5) the cached dashboard at 32 clients; (6) a
64-client, 60 s mixed load with rate limits on and an ETL cycle in the middle: errors other
than 429, and answers whose ``extensions.asOf`` is older than the last commit at the time
the request started. Prints the figures as Markdown tables (paste into BENCHMARKS.md).

The only write is (6)'s one normal incremental ETL cycle; everything else reads.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from etl import runs
from web.graphiql import DASHBOARD_QUERY

LARGEST = 1622968  # the seed-scale database's largest network; other databases use their own
JWT_SECRET = "api-bench-secret-" + "b" * 48
REPO = Path(__file__).resolve().parents[1]

LIST_QUERY = """query List { affiliates(first: 100) { edges { node {
  id name status totalCpaEarned totalRevEarned
  network { levels { level count deposits bets ggr cpa rev } } } } } }"""
RANKING_QUERY = """query Ranking { ranking(metric: CPA_EARNED, first: 20) { edges { node {
  id name rankCpa totalCpaEarned } } } }"""
ME_LIST_QUERY = """query Downline { affiliates(first: 20) { edges { node {
  id name totalCpaEarned network { levels { level count cpa } } } } } }"""

_LEVEL_FIELDS = " ".join(
    f"level{n}Count level{n}Deposits level{n}Bets level{n}Ggr level{n}Cpa level{n}Rev" for n in range(1, 6)
)
# The same dashboard for PostGraphile's generated schema (relations from postgraphile.tags.json5).
PGL_DASHBOARD = f"""query Dashboard($id: BigInt!) {{
  affiliatesRankedByAffiliateId(affiliateId: $id) {{
    affiliateId name status rankCpa totalReferrals totalValidatedReferrals totalNetworkSize
    totalDeposits totalBets totalGgr totalCpaEarned totalRevEarned
    affiliateMlmStructureByAffiliateId {{ totalNetworkSize {_LEVEL_FIELDS} }}
    affiliatePeriodicSummariesByAffiliateId(condition: {{periodType: "daily"}},
        orderBy: PERIOD_START_DESC, first: 30) {{
      nodes {{ periodStart newReferrals totalDeposits totalBets totalGgr cpaEarned revEarned }}
    }}
    affiliateReferralsByReferrerId(orderBy: [REFERRAL_DATE_DESC, REFERRED_ID_ASC], first: 10) {{
      totalCount
      edges {{ cursor node {{ referredId mlmLevel referralDate status totalDeposits cpaAmount }} }}
      pageInfo {{ hasNextPage endCursor }}
    }}
  }}
}}"""
# PostGraphile 4 infers relations from foreign keys; the robust tables have none, so the
# relations are declared as smart tags in a file (nothing is written to the database). The
# ranks live in the view ``affiliates_ranked`` (affiliates + rank by value), which Fature
# reads too: it gets a primary key tag and the relations point at it.
_TO_RANKED = "references affiliates_ranked (affiliate_id)"
PGL_TAGS = {
    "version": 1,
    "config": {
        "class": {
            "affiliates_ranked": {"tags": {"primaryKey": "affiliate_id"}},
            "affiliate_mlm_structure": {"tags": {"foreignKey": f"(affiliate_id) {_TO_RANKED}"}},
            "affiliate_periodic_summaries": {"tags": {"foreignKey": f"(affiliate_id) {_TO_RANKED}"}},
            "affiliate_referrals": {"tags": {"foreignKey": f"(referrer_id) {_TO_RANKED}"}},
        }
    },
}

# The old flow: the dashboard computed from the operation database on every request.
OLD_NETWORK = """
WITH RECURSIVE net(user_id, level, referred_at) AS (
    SELECT user_id, 1, criado_em FROM tracked WHERE afiliado_id = $1
    UNION ALL
    SELECT t.user_id, n.level + 1, t.criado_em FROM tracked t JOIN net n ON t.afiliado_id = n.user_id
    WHERE n.level < 5
)"""
OLD_FLOW = [
    OLD_NETWORK + """,
    dep AS (SELECT d.user_id, sum(d.valor) AS deposits FROM depositos d JOIN net USING (user_id)
            WHERE d.status = 'aprovado' GROUP BY d.user_id),
    bet AS (SELECT b.user_id, sum(b.valor_aposta) AS bets, sum(b.valor_aposta - b.valor_premio) AS ggr
            FROM casino_bets_v b JOIN net USING (user_id) GROUP BY b.user_id)
    SELECT n.level, count(*), sum(COALESCE(dep.deposits, 0)), sum(COALESCE(bet.bets, 0)),
           sum(COALESCE(bet.ggr, 0))
    FROM net n LEFT JOIN dep USING (user_id) LEFT JOIN bet USING (user_id)
    GROUP BY ROLLUP (n.level) ORDER BY n.level""",
    OLD_NETWORK + """,
    activity AS (
        SELECT (d.criado_em AT TIME ZONE 'America/Sao_Paulo')::date AS day, d.valor AS deposits,
               0::numeric AS bets, 0::numeric AS ggr
        FROM depositos d JOIN net USING (user_id) WHERE d.status = 'aprovado'
        UNION ALL
        SELECT (b.criado_em AT TIME ZONE 'America/Sao_Paulo')::date, 0, b.valor_aposta,
               b.valor_aposta - b.valor_premio
        FROM casino_bets_v b JOIN net USING (user_id)
        UNION ALL
        SELECT (referred_at AT TIME ZONE 'America/Sao_Paulo')::date, 0, 0, 0 FROM net
    )
    SELECT day, sum(deposits), sum(bets), sum(ggr) FROM activity
    GROUP BY day ORDER BY day DESC LIMIT 30""",
    OLD_NETWORK + """
    SELECT n.user_id, n.level, n.referred_at, COALESCE(sum(d.valor), 0)
    FROM (SELECT * FROM net ORDER BY referred_at DESC, user_id LIMIT 10) n
    LEFT JOIN depositos d ON d.user_id = n.user_id AND d.status = 'aprovado'
    GROUP BY n.user_id, n.level, n.referred_at ORDER BY n.referred_at DESC, n.user_id""",
]


# ------------------------------------------------------------------ the load generator


@dataclass
class Target:
    """One request a client may send: a prepared HTTP/1.1 POST and its label."""

    label: str
    raw: bytes


def post(port: int, path: str, body: dict[str, Any], token: str | None, label: str) -> Target:
    payload = json.dumps(body).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Accept: application/json\r\nContent-Length: {len(payload)}\r\n"
    )
    if token:
        head += f"Authorization: Bearer {token}\r\n"
    return Target(label, (head + "\r\n").encode() + payload)


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: bytes) -> tuple[int, bytes]:
    writer.write(raw)
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length, chunked = None, False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if chunked:
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip().split(b";")[0], 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                break
            parts.append(chunk[:-2])
        return status, b"".join(parts)
    return status, await reader.readexactly(length or 0)


@dataclass
class ClientReport:
    latencies: dict[str, list[float]] = field(default_factory=dict)
    statuses: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    # (started at, wall clock, label, extensions.asOf) of every 200 answer, when asked for
    answers: list[tuple[float, str, str | None]] = field(default_factory=list)
    completed: int = 0
    seconds: float = 0.0


async def _clients(
    port: int, targets: list[Target], concurrency: int, seconds: float, warmup: float,
    count: int | None, keep_answers: bool,
) -> ClientReport:
    report = ClientReport()
    loop = asyncio.get_running_loop()
    stop_at = 0.0
    measuring = False

    async def client(n: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        i = n
        try:
            while True:
                now = loop.time()
                if measuring and (now >= stop_at or (count is not None and report.completed >= count)):
                    return
                target = targets[i % len(targets)]
                i += 1
                wall = time.time()
                started = time.perf_counter()
                try:
                    status, body = await _exchange(reader, writer, target.raw)
                except (ConnectionError, asyncio.IncompleteReadError) as exc:
                    if measuring:
                        report.errors.append(f"{target.label}: connection {type(exc).__name__}")
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                    continue
                elapsed = time.perf_counter() - started
                if not measuring:
                    continue
                key = f"{target.label}:{status}"
                report.statuses[key] = report.statuses.get(key, 0) + 1
                if status == 429:
                    continue
                report.completed += 1
                report.latencies.setdefault(target.label, []).append(elapsed)
                if status != 200 or b'"errors"' in body:
                    report.errors.append(f"{target.label}: HTTP {status} {body[:200]!r}")
                elif keep_answers:
                    as_of = json.loads(body).get("extensions", {}).get("asOf")
                    report.answers.append((wall, target.label, as_of))
        finally:
            writer.close()

    tasks = [asyncio.create_task(client(n)) for n in range(concurrency)]
    await asyncio.sleep(warmup)
    measuring = True
    began = loop.time()
    stop_at = began + seconds
    await asyncio.gather(*tasks)
    report.seconds = loop.time() - began
    return report


def _client_process(queue: Any, args: tuple[Any, ...]) -> None:
    import uvloop

    queue.put(uvloop.run(_clients(*args)))


def drive(
    port: int, targets: list[Target], *, concurrency: int, seconds: float = 8.0, warmup: float = 1.0,
    count: int | None = None, keep_answers: bool = False,
) -> ClientReport:
    """Run the clients in a separate process (so they do not share the server's core)."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    process = ctx.Process(target=_client_process,
                          args=(queue, (port, targets, concurrency, seconds, warmup, count, keep_answers)))
    process.start()
    report = queue.get(timeout=seconds + warmup + 120)
    process.join(10)
    return report


def drive_async(**kw: Any) -> asyncio.Future[ClientReport]:
    return asyncio.get_running_loop().run_in_executor(None, lambda: drive(**kw))


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


# ------------------------------------------------------------------ servers


def wait_port(port: int, path: str = "/healthz", timeout: float = 60) -> None:
    import urllib.error
    import urllib.request

    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1)
            return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"nothing answers on 127.0.0.1:{port}{path}")


class Server:
    def __init__(self, argv: list[str], env: dict[str, str], port: int, cwd: Path, probe: str) -> None:
        self.log = open(f"/tmp/api_bench_{port}.log", "w")  # noqa: SIM115
        self.process = subprocess.Popen(argv, env=env, cwd=cwd, stdout=self.log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        self.port = port
        wait_port(port, probe)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.log.close()


def fature(port: int, robust_url: str, *, cache: bool, rate_limits: bool) -> Server:
    env = {
        **os.environ,
        "FATURE_DATABASE_URL": robust_url,
        "FATURE_JWT_SECRET": JWT_SECRET,
        "FATURE_ETL_SCHEDULER_ENABLED": "false",
        "FATURE_ACCESS_LOG": "false",
        "FATURE_CACHE_ENABLED": "true" if cache else "false",
        "FATURE_RATE_LIMIT_ENABLED": "true" if rate_limits else "false",
    }
    argv = [sys.executable, "-m", "uvicorn", "app:create_app", "--factory", "--loop", "uvloop",
            "--http", "httptools", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
            "--no-access-log", "--log-level", "warning"]
    return Server(argv, env, port, REPO, "/healthz")


def postgraphile(folder: Path, port: int, robust_url: str) -> Server:
    binary = folder / "node_modules" / ".bin" / "postgraphile"
    if not binary.exists():
        raise RuntimeError(f"{binary} not found: run `npm install postgraphile@4` in {folder}")
    (folder / "postgraphile.tags.json5").write_text(json.dumps(PGL_TAGS, indent=2))
    argv = [str(binary), "--connection", robust_url, "--schema", "public", "--host", "127.0.0.1",
            "--port", str(port), "--disable-default-mutations", "--disable-query-log",
            "--no-setof-functions-contain-nulls", "--max-pool-size", "10"]
    env = {**os.environ, "NODE_ENV": "production"}
    return Server(argv, env, port, folder, "/graphql")


# ------------------------------------------------------------------ the measurements


def token(role: str, affiliate_id: int | None = None) -> str:
    from db.settings import Settings
    from web.auth import mint_token

    settings = Settings(jwt_secret=JWT_SECRET, _env_file=None)
    return mint_token(settings, role, affiliate_id, ttl=timedelta(hours=2))


async def pick_affiliates(url: str) -> dict[str, Any]:
    conn = await asyncpg.connect(url)
    try:
        small = await conn.fetchval(
            "SELECT a.affiliate_id FROM affiliates a WHERE a.total_network_size BETWEEN 5 AND 30 "
            "AND (SELECT count(*) FROM affiliate_periodic_summaries s WHERE s.affiliate_id = a.affiliate_id "
            "     AND s.period_type = 'daily') >= 30 ORDER BY a.affiliate_id LIMIT 1"
        )
        largest = await conn.fetchrow(
            "SELECT affiliate_id, total_network_size FROM affiliates WHERE affiliate_id = $1", LARGEST
        ) or await conn.fetchrow(
            "SELECT affiliate_id, total_network_size FROM affiliates ORDER BY total_network_size DESC LIMIT 1"
        )
        small_size = await conn.fetchval(
            "SELECT total_network_size FROM affiliates WHERE affiliate_id = $1", small
        )
        # Affiliates with a network, for the load run's tokens (each reads its own dashboard).
        load_ids = [r[0] for r in await conn.fetch(
            "SELECT affiliate_id FROM affiliates WHERE total_network_size > 0 "
            "ORDER BY total_network_size DESC LIMIT 16"
        )]
        return {"small": small, "small_size": small_size, "largest": largest[0],
                "largest_size": largest[1], "load_ids": load_ids}
    finally:
        await conn.close()


async def old_flow(operation_url: str, affiliate_id: int, runs: int = 3) -> tuple[float, list[float]]:
    conn = await asyncpg.connect(operation_url)
    try:
        await conn.execute("SET statement_timeout = '120s'")
        await conn.execute("SET default_transaction_read_only = on")
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            for query in OLD_FLOW:
                await conn.fetch(query, affiliate_id)
            times.append(time.perf_counter() - started)
        return statistics.median(times), times
    finally:
        await conn.close()


async def last_success(robust_url: str) -> tuple[int, datetime | None]:
    conn = await asyncpg.connect(robust_url)
    try:
        row = await runs.last_success(conn)
        return (row["id"], row["source_as_of"]) if row else (0, None)
    finally:
        await conn.close()


def dashboard(port: int, tok: str, affiliate_id: int, label: str) -> Target:
    return post(port, "/graphql", {"query": DASHBOARD_QUERY, "variables": {"id": str(affiliate_id)},
                                   "operationName": "Dashboard"}, tok, label)


def pgl_dashboard(port: int, affiliate_id: int, label: str) -> Target:
    return post(port, "/graphql", {"query": PGL_DASHBOARD, "variables": {"id": str(affiliate_id)},
                                   "operationName": "Dashboard"}, None, label)


def single_client(port: int, target: Target, n: int) -> tuple[float, float]:
    report = drive(port, [target], concurrency=1, seconds=120, warmup=1.5, count=n)
    assert not report.errors, report.errors[:3]
    lat = report.latencies[target.label]
    return pct(lat, 0.5), pct(lat, 0.99)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--robust", default="fature_bench_robust")
    parser.add_argument("--operation", default="fature_bench_operation")
    parser.add_argument("--pgl", default="/tmp/pgl", type=Path)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--pgl-port", type=int, default=5765)
    parser.add_argument("--seconds", type=float, default=8.0, help="each throughput round")
    parser.add_argument("--rounds", type=int, default=2, help="alternating Fature/PostGraphile rounds")
    parser.add_argument("--requests", type=int, default=400, help="single-client latency samples")
    parser.add_argument("--load-seconds", type=float, default=60.0)
    parser.add_argument("--skip-load", action="store_true")
    parser.add_argument("--skip-pgl", action="store_true")
    parser.add_argument("--skip-old", action="store_true")
    parser.add_argument("--only-load", action="store_true")
    args = parser.parse_args()
    robust_url = f"{args.base_url}/{args.robust}"
    operation_url = f"{args.base_url}/{args.operation}"
    started = time.time()
    picked = await pick_affiliates(robust_url)
    small, largest = picked["small"], picked["largest"]
    admin = token("admin")
    rows: list[tuple[str, str]] = []
    notes: list[str] = []
    port = args.port

    def row(what: str, value: str) -> None:
        rows.append((what, value))
        print(f"{what}: {value}", flush=True)

    if args.only_load:
        await load_run(args, port, robust_url, operation_url, picked["load_ids"], row, notes)
        report_table(started, small, largest, picked, rows, notes)
        return

    # (1), (3): uncached, one client
    server = fature(port, robust_url, cache=False, rate_limits=False)
    pgl: Server | None = None
    try:
        for name, affiliate_id, size in (("small", small, picked["small_size"]),
                                         ("largest", largest, picked["largest_size"])):
            p50, p99 = single_client(port, dashboard(port, admin, affiliate_id, name), args.requests)
            row(f"dashboard uncached, 1 client, {name} affiliate {affiliate_id} (network {size:,})",
                f"p50 {p50:.2f} ms, p99 {p99:.2f} ms")
        p50, p99 = single_client(port, post(port, "/graphql", {"query": LIST_QUERY}, admin, "list"),
                                 max(100, args.requests // 4))
        row("100-affiliate list with five levels, uncached, 1 client", f"p50 {p50:.2f} ms, p99 {p99:.2f} ms")

        # (2): 32 clients, side by side with PostGraphile (alternating rounds)
        if not args.skip_pgl:
            try:
                pgl = postgraphile(args.pgl, args.pgl_port, robust_url)
                probe = drive(args.pgl_port, [pgl_dashboard(args.pgl_port, largest, "probe")],
                              concurrency=1, seconds=5, warmup=0.5, count=3)
                if probe.errors:
                    notes.append(f"PostGraphile answered with errors: {probe.errors[0]}")
                    pgl.stop()
                    pgl = None
            except RuntimeError as exc:
                notes.append(f"PostGraphile not measured: {exc}")
                pgl = None
        throughput: dict[str, list[float]] = {}
        p99s: dict[str, list[float]] = {}
        for _ in range(args.rounds):
            for name, affiliate_id in (("small", small), ("largest", largest)):
                contenders = [("fature", port, dashboard(port, admin, affiliate_id, name))]
                if pgl is not None:
                    contenders.append(("pgl", args.pgl_port, pgl_dashboard(args.pgl_port, affiliate_id, name)))
                for who, p, target in contenders:
                    report = drive(p, [target], concurrency=32, seconds=args.seconds)
                    if report.errors:
                        notes.append(f"{who} {name}: {len(report.errors)} errors, e.g. {report.errors[0]}")
                    throughput.setdefault(f"{who}:{name}", []).append(report.completed / report.seconds)
                    p99s.setdefault(f"{who}:{name}", []).append(pct(report.latencies[name], 0.99))
        pgl_rps: dict[str, float] = {}
        for name in ("small", "largest"):
            ours = statistics.median(throughput[f"fature:{name}"])
            text = f"Fature {ours:,.0f} req/s (p99 {statistics.median(p99s[f'fature:{name}']):.1f} ms)"
            if pgl is not None:
                theirs = statistics.median(throughput[f"pgl:{name}"])
                pgl_rps[name] = theirs
                text += (f", PostGraphile {theirs:,.0f} req/s (p99 {statistics.median(p99s[f'pgl:{name}']):.1f} ms)"
                         f", ratio {ours / theirs:.2f}x")
            row(f"dashboard uncached, 32 clients, {name} affiliate", text)

        # (4): the old flow for the largest affiliate vs Fature's answer
        if not args.skip_old:
            old_median, old_times = await old_flow(operation_url, largest)
            ours_p50, _ = single_client(port, dashboard(port, admin, largest, "largest"), 100)
            row(f"old flow (recursive query on the operation DB, 3 queries), affiliate {largest}",
                f"{old_median * 1000:,.0f} ms (median of {len(old_times)}) vs Fature {ours_p50:.2f} ms: "
                f"{old_median * 1000 / ours_p50:,.0f}x faster")
    finally:
        server.stop()

    # (5): cached dashboard, 32 clients, vs PostGraphile in the same run
    server = fature(port, robust_url, cache=True, rate_limits=False)
    try:
        cached: dict[str, list[float]] = {}
        cached_p99: dict[str, list[float]] = {}
        for _ in range(args.rounds):
            for name, affiliate_id in (("small", small), ("largest", largest)):
                report = drive(port, [dashboard(port, admin, affiliate_id, name)], concurrency=32,
                               seconds=args.seconds)
                if report.errors:
                    notes.append(f"cached {name}: {len(report.errors)} errors, e.g. {report.errors[0]}")
                cached.setdefault(name, []).append(report.completed / report.seconds)
                cached_p99.setdefault(name, []).append(pct(report.latencies[name], 0.99))
                if pgl is not None:
                    pgl_report = drive(args.pgl_port, [pgl_dashboard(args.pgl_port, affiliate_id, name)],
                                       concurrency=32, seconds=args.seconds)
                    throughput[f"pgl:{name}"].append(pgl_report.completed / pgl_report.seconds)
        for name in ("small", "largest"):
            ours = statistics.median(cached[name])
            text = f"Fature {ours:,.0f} req/s, p99 {statistics.median(cached_p99[name]):.1f} ms"
            if pgl is not None:
                theirs = statistics.median(throughput[f"pgl:{name}"])
                text += f"; PostGraphile (uncached by design) {theirs:,.0f} req/s; ratio {ours / theirs:.2f}x"
            row(f"dashboard CACHED, 32 clients, {name} affiliate", text)
    finally:
        server.stop()
        if pgl is not None:
            pgl.stop()

    # (6): bounded mixed load with rate limits on and an ETL cycle in the middle
    if not args.skip_load:
        await load_run(args, port, robust_url, operation_url, picked["load_ids"], row, notes)

    report_table(started, small, largest, picked, rows, notes)


def report_table(started: float, small: int, largest: int, picked: dict[str, Any],
                 rows: list[tuple[str, str]], notes: list[str]) -> None:
    print()
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}; {datetime.now().astimezone():%Y-%m-%d %H:%M %Z}; "
          f"bench took {time.time() - started:.0f} s")
    print(f"affiliates: small {small} (network {picked['small_size']:,}), largest {largest} "
          f"(network {picked['largest_size']:,})")
    print("| measurement | result |")
    print("|---|---|")
    for what, value in rows:
        print(f"| {what} | {value} |")
    for note in notes:
        print(f"- {note}")


async def load_run(
    args: argparse.Namespace, port: int, robust_url: str, operation_url: str, load_ids: list[int],
    row: Any, notes: list[str],
) -> None:
    from db.settings import Settings
    from etl.sync import run_cycle

    targets: list[Target] = []
    for n, affiliate_id in enumerate(load_ids):
        tok = token("affiliate", affiliate_id)
        targets.append(dashboard(port, tok, affiliate_id, "dashboard"))
        targets.append(post(port, "/graphql", {"query": ME_LIST_QUERY}, tok, "list"))
        targets.append(post(port, "/graphql", {"query": RANKING_QUERY}, tok, "ranking"))
        if n % 4 == 0:
            analyst = token("analyst")
            targets.append(post(port, "/graphql", {"query": LIST_QUERY}, analyst, "list100"))
    server = fature(port, robust_url, cache=True, rate_limits=True)
    try:
        before_id, before_as_of = await last_success(robust_url)
        running = drive_async(port=port, targets=targets, concurrency=64, seconds=args.load_seconds,
                              warmup=0.5, keep_answers=True)
        await asyncio.sleep(args.load_seconds / 2 - 5)
        settings = Settings(database_url=robust_url, operation_database_url=operation_url,
                            etl_scheduler_enabled=False, _env_file=None)
        cycle_started = time.time()
        result: Any = None
        try:
            result = await run_cycle(settings, robust_url, operation_url, trigger="bench")
        except Exception as exc:  # noqa: BLE001 - reported, the load run goes on
            notes.append(f"the ETL cycle in the middle failed: {type(exc).__name__}: {str(exc)[:200]}")
        committed_at = time.time()  # the commit happened before run_cycle returned
        report = await running
    finally:
        server.stop()
    new_as_of = result.source_as_of.isoformat() if result is not None and result.source_as_of else (
        before_as_of.isoformat() if before_as_of else None)
    statuses: dict[str, int] = {}
    for key, n in report.statuses.items():
        status = key.rsplit(":", 1)[1]
        statuses[status] = statuses.get(status, 0) + n
    answered = sum(n for s, n in statuses.items() if s != "429")
    stale = [a for a in report.answers if a[0] >= committed_at and (a[2] or "") < (new_as_of or "")]
    older_than_before = [a for a in report.answers
                         if before_as_of is not None and (a[2] or "") < before_as_of.isoformat()]
    lag = max((a[0] - committed_at for a in stale), default=0.0)
    row(f"load: 64 clients, {args.load_seconds:.0f} s, {len(load_ids)} affiliate tokens (+analyst), "
        "dashboard/list/ranking, rate limits on, cache on",
        f"{answered / report.seconds:,.0f} answered req/s; statuses {dict(sorted(statuses.items()))}; "
        f"errors other than 429: {len(report.errors)}")
    row("load: ETL cycle in the middle",
        (f"run {result.run_id} ({result.mode}, {result.status})" if result is not None else "FAILED")
        + f" after {committed_at - cycle_started:.1f} s; "
        f"as-of {before_as_of.isoformat() if before_as_of else None} -> {new_as_of}")
    row("load: answers older than the last commit when the request started",
        f"{len(stale) + len(older_than_before)} of {len(report.answers)}"
        + (f" (requests up to {lag:.1f} s after the commit still saw the previous as-of)" if stale else ""))
    for label, lat in sorted(report.latencies.items()):
        row(f"load: {label} latency (answered)", f"p50 {pct(lat, 0.5):.1f} ms, p99 {pct(lat, 0.99):.1f} ms")
    if report.errors:
        notes.append(f"load errors, e.g. {report.errors[:3]}")
    if result is None or before_id == result.run_id:
        notes.append("the ETL cycle did not commit a new run")


if __name__ == "__main__":
    asyncio.run(main())
