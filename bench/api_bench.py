"""API benchmark at seed scale: one uvicorn worker against an ETL-built robust database, beside
PostGraphile 4 and 5, and beside the code before a change (``--before``).

    .venv/bin/python -m bench.api_bench [--base-url postgresql://postgres@127.0.0.1:5432]
        [--robust fature_bench_robust] [--operation fature_bench_operation]
        [--before /tmp/fature-before] [--pgl /tmp/pgl] [--pgl5 /tmp/pgl5]
        [--seconds 8] [--rounds 2] [--requests 400] [--load-seconds 60]
        [--skip-single] [--skip-old] [--skip-cached] [--skip-load] [--skip-pgl] [--skip-pgl4]
        [--skip-pgl5] [--only-load]

Run ``bench.etl_bench`` first (it builds both databases). Everything runs on loopback: Fature
(``uvicorn app:create_app --factory --loop uvloop --http httptools``, one worker, no in-process
scheduler, no access log, no rate limits) and, side by side, PostGraphile 4 and 5 (installed
outside the repo: see bench/graphile.py) pointed at the same robust database. The load
generator is a separate process: asyncio connections speaking HTTP/1.1 keep-alive directly
(an httpx pool would cost the 2-core machine more CPU than the server under test).

The Fature contenders: the current tree ("after") and, with ``--before PATH``, another
checkout of the repository ("before", e.g. ``git worktree add /tmp/fature-before <commit>``)
run by the same interpreter with that folder as its working directory and PYTHONPATH. Each
tree runs two servers: the plain path (the full text of the tree's
web/documents/Dashboard.graphql in every request) and the trusted-document path
(``FATURE_TRUSTED_DOCUMENTS=affiliates`` with the tree's web/documents/manifest.json: a
request carries only ``operationName``, ``variables`` and ``extensions.persistedQuery``'s
sha256, as web/persisted.py expects; measured for a tree only when it has the manifest). The
dashboards are read with the affiliate's own token (the affiliate whose dashboard it is);
the 100-affiliate list with an admin token.

Measured: (0) a probe: every contender answers both dashboards, the Fature answers are
identical, PostGraphile's carry the same numbers as Fature's; (1) the dashboard uncached,
one client, p50/p99, for a small affiliate and the largest, and the 100-affiliate list with
levels; (2) its throughput at 32 clients, every contender in alternating rounds (each round
in the reverse order of the one before; the figures are the medians of ``--rounds``): req/s,
p50, p99 and the CPU per answered request of the server's processes and of PostgreSQL's
(bench/proc_cpu.py: the whole cluster's, so other work on it counts); (3) the old flow (a
recursive query over the operation database) vs Fature for the largest affiliate; (4) the
cached dashboard at 32 clients, Fature's contenders in alternating rounds; (5) a 64-client,
60 s mixed load (the current tree) with rate limits on and an ETL cycle in the middle:
errors other than 429, and answers whose ``extensions.asOf`` is older than the last commit
at the time the request started. Prints the figures as Markdown tables (paste into
BENCHMARKS.md) and the ratio lines.

The only write is (5)'s one normal incremental ETL cycle; everything else reads.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from bench.graphile import (
    PGL5_DASHBOARD,
    PGL_DASHBOARD,
    differences,
    fature_numbers,
    pgl4_command,
    pgl5_command,
    pgl_numbers,
)
from bench.http_load import Target, drive, drive_async, pct, post
from bench.proc_cpu import delta, postmaster_pid, tree_seconds
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


# ------------------------------------------------------------------ servers


def wait_port(port: int, path: str = "/healthz", timeout: float = 60) -> None:
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
    """A server process in its own session, its output in /tmp/api_bench_<port>.log; started
    when built (once it answers ``probe``), stopped by ``stop``."""

    def __init__(self, argv: list[str], env: dict[str, str], port: int, cwd: Path, probe: str) -> None:
        self.log_path = f"/tmp/api_bench_{port}.log"
        self.log = open(self.log_path, "w")  # noqa: SIM115
        self.process = subprocess.Popen(argv, env=env, cwd=cwd, stdout=self.log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        self.port = port
        try:
            wait_port(port, probe)
        except RuntimeError as exc:
            self.stop()
            tail = Path(self.log_path).read_text(errors="replace")[-600:]
            raise RuntimeError(f"{exc}; its log ends: {tail}") from exc

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.log.close()


def fature(port: int, robust_url: str, *, cache: bool, rate_limits: bool, tree: Path = REPO,
           manifest: Path | None = None) -> Server:
    """One uvicorn worker of the checkout ``tree`` (this one by default; another one runs with
    the same interpreter, its folder as working directory and PYTHONPATH). With ``manifest``,
    affiliates may run only its trusted documents (FATURE_TRUSTED_DOCUMENTS=affiliates)."""
    env = {
        **os.environ,
        "FATURE_DATABASE_URL": robust_url,
        "FATURE_JWT_SECRET": JWT_SECRET,
        "FATURE_ETL_SCHEDULER_ENABLED": "false",
        "FATURE_ACCESS_LOG": "false",
        "FATURE_CACHE_ENABLED": "true" if cache else "false",
        "FATURE_RATE_LIMIT_ENABLED": "true" if rate_limits else "false",
    }
    if tree.resolve() != REPO:
        env["PYTHONPATH"] = str(tree)
    if manifest is not None:
        env["FATURE_TRUSTED_DOCUMENTS"] = "affiliates"
        env["FATURE_TRUSTED_DOCUMENTS_PATH"] = str(manifest)
    argv = [sys.executable, "-m", "uvicorn", "app:create_app", "--factory", "--loop", "uvloop",
            "--http", "httptools", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
            "--no-access-log", "--log-level", "warning"]
    return Server(argv, env, port, tree, "/healthz")


def postgraphile(folder: Path, port: int, robust_url: str) -> Server:
    """PostGraphile 4 (bench/graphile.py)."""
    argv, env = pgl4_command(folder, port, robust_url)
    return Server(argv, env, port, folder, "/graphql")


def postgraphile5(folder: Path, port: int, robust_url: str) -> Server:
    """PostGraphile 5 on Node 22 (bench/graphile.py)."""
    argv, env = pgl5_command(folder, port, robust_url)
    return Server(argv, env, port, folder, "/graphql")


@dataclass(frozen=True)
class Tree:
    """A checkout of the repository measured as a Fature contender: its dashboard document,
    and the manifest id of that document when the checkout serves trusted documents."""

    label: str  # "after" (this checkout) or "before"
    path: Path
    dashboard: str
    manifest: Path | None
    dashboard_hash: str | None


def tree_of(label: str, path: Path) -> Tree:
    documents = path / "web" / "documents"
    document = documents / "Dashboard.graphql"
    dashboard = document.read_text(encoding="utf-8") if document.exists() else DASHBOARD_QUERY
    manifest = documents / "manifest.json"
    settings = path / "db" / "settings.py"
    if not manifest.exists() or "trusted_documents" not in settings.read_text(encoding="utf-8"):
        return Tree(label, path, dashboard, None, None)
    operations = json.loads(manifest.read_text(encoding="utf-8")).get("operations", [])
    ids = [op["id"] for op in operations if op.get("name") == "Dashboard"]
    return Tree(label, path, dashboard, manifest if ids else None, ids[0] if ids else None)


@dataclass
class Contender:
    """One server measured under a name ("after trusted", "PostGraphile 5"): the request it
    answers for an affiliate's dashboard, and how its answer maps to comparable numbers."""

    name: str
    server: Server
    request: Callable[[int, str], Target]  # (affiliate id, label) -> the dashboard request
    fature: bool
    tree: Tree | None = None
    trusted: bool = False


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
        # Active affiliates with a network, for the load run's tokens (each reads its own
        # dashboard; a suspended account's token is refused with 403 ACCOUNT_SUSPENDED).
        load_ids = [r[0] for r in await conn.fetch(
            "SELECT affiliate_id FROM affiliates WHERE total_network_size > 0 AND status = 'active' "
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


def dashboard(port: int, tok: str, affiliate_id: int, label: str, query: str = DASHBOARD_QUERY) -> Target:
    """Fature's dashboard on the plain path: the document's full text in the body."""
    return post(port, "/graphql", {"query": query, "variables": {"id": str(affiliate_id)},
                                   "operationName": "Dashboard"}, tok, label)


def trusted_dashboard(port: int, tok: str, affiliate_id: int, label: str, sha256: str) -> Target:
    """Fature's dashboard on the trusted-document path: the manifest id alone (web/persisted.py)."""
    return post(port, "/graphql", {"operationName": "Dashboard", "variables": {"id": str(affiliate_id)},
                                   "extensions": {"persistedQuery": {"version": 1, "sha256Hash": sha256}}},
                tok, label)


def pgl_dashboard(port: int, affiliate_id: int, label: str, query: str = PGL_DASHBOARD) -> Target:
    return post(port, "/graphql", {"query": query, "variables": {"id": str(affiliate_id)},
                                   "operationName": "Dashboard"}, None, label)


def answer(target: Target) -> dict[str, Any]:
    """One request sent on its own connection; its JSON answer (or ``{"errors": ...}``)."""
    head, _, payload = target.raw.partition(b"\r\n\r\n")
    request_line, *header_lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in header_lines)
    host, path = headers.pop("Host"), request_line.split(" ")[1]
    headers.pop("Content-Length", None)
    request = urllib.request.Request(f"http://{host}{path}", payload, headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            parsed: dict[str, Any] = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return {"errors": [f"HTTP {exc.code}: {exc.read()[:300]!r}"]}
    return parsed


def single_client(port: int, target: Target, n: int) -> tuple[float, float]:
    report = drive(port, [target], concurrency=1, seconds=120, warmup=1.5, count=n)
    assert not report.errors, report.errors[:3]
    lat = report.latencies[target.label]
    return pct(lat, 0.5), pct(lat, 0.99)


@dataclass
class Round:
    """One contender's figures in one 32-client round."""

    rps: float
    p50: float
    p99: float
    server_ms: float  # CPU ms per answered request: the server's processes
    postgres_ms: float  # the PostgreSQL cluster's


def measure(contender: Contender, affiliate_id: int, label: str, seconds: float, postmaster: int | None,
            notes: list[str], what: str) -> Round:
    """32 clients on ``contender``'s dashboard for ``affiliate_id`` for ``seconds``."""
    roots = {"server": contender.server.process.pid}
    if postmaster is not None:
        roots["postgres"] = postmaster
    report = drive(contender.server.port, [contender.request(affiliate_id, label)], concurrency=32,
                   seconds=seconds, cpu_roots=roots)
    if report.errors:
        notes.append(f"{what} {contender.name} {label}: {len(report.errors)} errors, e.g. {report.errors[0]}")
    lat = report.latencies.get(label, [])
    answered = max(report.completed, 1)
    result = Round(report.completed / report.seconds, pct(lat, 0.5), pct(lat, 0.99),
                   report.cpu.get("server", float("nan")) * 1000 / answered,
                   report.cpu.get("postgres", float("nan")) * 1000 / answered)
    print(f"  {what} {label} {contender.name}: {result.rps:,.0f} req/s, p50 {result.p50:.1f} ms, "
          f"p99 {result.p99:.1f} ms, CPU ms/req server {result.server_ms:.2f} + PostgreSQL "
          f"{result.postgres_ms:.2f}", flush=True)
    return result


def rounds_of(contenders: list[Contender], sizes: list[tuple[str, int]], rounds: int, seconds: float,
              postmaster: int | None, notes: list[str], what: str) -> dict[tuple[str, str], list[Round]]:
    """Every contender on every size, ``rounds`` times, each round in the reverse order of the
    one before (ABBA), so each sees the same moments of a busy machine."""
    results: dict[tuple[str, str], list[Round]] = {}
    order = [(label, affiliate_id, c) for label, affiliate_id in sizes for c in contenders]
    for n in range(rounds):
        print(f"{what}, round {n + 1} of {rounds}", flush=True)
        for label, affiliate_id, contender in (order if n % 2 == 0 else order[::-1]):
            results.setdefault((contender.name, label), []).append(
                measure(contender, affiliate_id, label, seconds, postmaster, notes, what))
    return results


def median_round(found: list[Round]) -> Round:
    """The median of each figure over the rounds."""
    return Round(statistics.median(r.rps for r in found), statistics.median(r.p50 for r in found),
                 statistics.median(r.p99 for r in found), statistics.median(r.server_ms for r in found),
                 statistics.median(r.postgres_ms for r in found))


# ------------------------------------------------------------------ the contenders


def _plain(port: int, query: str, tokens: dict[int, str]) -> Callable[[int, str], Target]:
    return lambda affiliate_id, label: dashboard(port, tokens[affiliate_id], affiliate_id, label, query)


def _trusted(port: int, sha256: str, tokens: dict[int, str]) -> Callable[[int, str], Target]:
    return lambda affiliate_id, label: trusted_dashboard(port, tokens[affiliate_id], affiliate_id, label, sha256)


def _pgl(port: int, query: str) -> Callable[[int, str], Target]:
    return lambda affiliate_id, label: pgl_dashboard(port, affiliate_id, label, query)


def start_fature(trees: list[Tree], port: int, robust_url: str, tokens: dict[int, str], *, cache: bool,
                 notes: list[str]) -> list[Contender]:
    """Each tree's plain and trusted-document servers (ports ``port``, ``port`` + 1, ...)."""
    contenders: list[Contender] = []
    for tree in trees:
        for trusted in (False, True):
            name = f"{tree.label} {'trusted' if trusted else 'plain'}"
            if trusted and tree.dashboard_hash is None:
                if not cache:
                    notes.append(f"{name}: not measured ({tree.path} has no web/documents/manifest.json "
                                 "with a Dashboard operation, or no FATURE_TRUSTED_DOCUMENTS)")
                continue
            try:
                server = fature(port, robust_url, cache=cache, rate_limits=False, tree=tree.path,
                                manifest=tree.manifest if trusted else None)
            except RuntimeError as exc:
                notes.append(f"{name}: did not start: {exc}")
                continue
            request = (_trusted(port, tree.dashboard_hash, tokens) if trusted and tree.dashboard_hash
                       else _plain(port, tree.dashboard, tokens))
            contenders.append(Contender(name, server, request, True, tree, trusted))
            port += 1
    return contenders


def start_pgl(args: argparse.Namespace, robust_url: str, notes: list[str]) -> list[Contender]:
    contenders: list[Contender] = []
    wanted = [("PostGraphile 4", args.skip_pgl4, postgraphile, args.pgl, args.pgl_port, PGL_DASHBOARD),
              ("PostGraphile 5", args.skip_pgl5, postgraphile5, args.pgl5, args.pgl5_port, PGL5_DASHBOARD)]
    for name, skipped, start, folder, port, query in wanted:
        if args.skip_pgl or skipped:
            continue
        try:
            server = start(folder, port, robust_url)
        except RuntimeError as exc:
            notes.append(f"{name} not measured: {exc}")
            continue
        contenders.append(Contender(name, server, _pgl(port, query), False))
    return contenders


def probe(contenders: list[Contender], sizes: list[tuple[str, int]], tokens: dict[int, str],
          notes: list[str]) -> list[Contender]:
    """Each contender answers both dashboards once; those answering errors are dropped. The
    Fature answers must be identical (before/after, plain/trusted) and PostGraphile's must
    carry the same numbers as Fature's; a trusted-document server must refuse a document
    outside its manifest. Prints and notes what it found."""
    answers: dict[tuple[str, str], dict[str, Any]] = {}
    kept: list[Contender] = []
    for contender in contenders:
        if contender.trusted:
            label, affiliate_id = sizes[0]
            outside = dashboard(contender.server.port, tokens[affiliate_id], affiliate_id, label,
                                DASHBOARD_QUERY + "\n# not in the manifest\n")
            refused = "TRUSTED_DOCUMENT_REQUIRED" in json.dumps(answer(outside))
            line = (f"probe: {contender.name} refuses an affiliate's document outside the manifest "
                    "(TRUSTED_DOCUMENT_REQUIRED)" if refused else
                    f"probe: {contender.name} ran a document outside the manifest: "
                    "FATURE_TRUSTED_DOCUMENTS=affiliates is not in force")
            print(line, flush=True)
            notes.append(line)
        for label, affiliate_id in sizes:
            got = answer(contender.request(affiliate_id, label))
            if got.get("errors") or not got.get("data"):
                notes.append(f"{contender.name} answered {label} with errors, not measured: "
                             f"{str(got.get('errors'))[:300]}")
                contender.server.stop()
                break
            answers[(contender.name, label)] = got["data"]
        else:
            kept.append(contender)
    reference = next((c for c in kept if c.fature and c.tree is not None and c.tree.label == "after"
                      and not c.trusted), next((c for c in kept if c.fature), None))
    if reference is None:
        return kept
    for label, affiliate_id in sizes:
        ours = answers[(reference.name, label)]
        for contender in kept:
            if contender is reference:
                continue
            theirs = answers[(contender.name, label)]
            found = (differences(ours, theirs) if contender.fature
                     else differences(fature_numbers(ours), pgl_numbers(theirs)))
            what = "the same answer" if contender.fature else "numbers agree"
            line = (f"probe, {label} affiliate {affiliate_id}: {contender.name} vs {reference.name}: "
                    + (what if not found else f"DIFFER in {len(found)} places: {'; '.join(found[:5])}"))
            print(line, flush=True)
            notes.append(line)
    return kept


def stop_all(contenders: list[Contender]) -> None:
    for contender in contenders:
        contender.server.stop()


# ------------------------------------------------------------------ the run


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--robust", default="fature_bench_robust")
    parser.add_argument("--operation", default="fature_bench_operation")
    parser.add_argument("--before", type=Path, default=None,
                        help="another checkout measured beside this one (the code before a change)")
    parser.add_argument("--pgl", default="/tmp/pgl", type=Path, help="PostGraphile 4's npm folder")
    parser.add_argument("--pgl5", default="/tmp/pgl5", type=Path, help="PostGraphile 5's (and Node 22's)")
    parser.add_argument("--port", type=int, default=8765, help="Fature's first port (one per server)")
    parser.add_argument("--pgl-port", type=int, default=5765)
    parser.add_argument("--pgl5-port", type=int, default=5766)
    parser.add_argument("--seconds", type=float, default=8.0, help="each throughput round")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of every contender")
    parser.add_argument("--requests", type=int, default=400, help="single-client latency samples")
    parser.add_argument("--load-seconds", type=float, default=60.0)
    parser.add_argument("--skip-single", action="store_true", help="no single-client latencies, no list")
    parser.add_argument("--skip-old", action="store_true", help="no old flow (operation database)")
    parser.add_argument("--skip-cached", action="store_true")
    parser.add_argument("--skip-load", action="store_true")
    parser.add_argument("--skip-pgl", action="store_true", help="neither PostGraphile")
    parser.add_argument("--skip-pgl4", action="store_true")
    parser.add_argument("--skip-pgl5", action="store_true")
    parser.add_argument("--only-load", action="store_true")
    args = parser.parse_args()
    robust_url = f"{args.base_url}/{args.robust}"
    operation_url = f"{args.base_url}/{args.operation}"
    started = time.time()
    picked = await pick_affiliates(robust_url)
    small, largest = picked["small"], picked["largest"]
    sizes = [("small", small), ("largest", largest)]
    tokens = {affiliate_id: token("affiliate", affiliate_id) for _, affiliate_id in sizes}
    rows: list[tuple[str, str]] = []
    notes: list[str] = []

    def row(what: str, value: str) -> None:
        rows.append((what, value))
        print(f"{what}: {value}", flush=True)

    if args.only_load:
        await load_run(args, args.port, robust_url, operation_url, picked["load_ids"], row, notes)
        report_table(started, picked, rows, [], {}, {}, notes)
        return

    postmaster: int | None = None
    try:
        postmaster = await postmaster_pid(robust_url)
    except (RuntimeError, OSError) as exc:
        notes.append(f"PostgreSQL's CPU not measured: {exc}")
    if postmaster is not None:
        # Everything the cluster does counts in PostgreSQL's figures: say how busy it is idle.
        idle_before = tree_seconds({"postgres": postmaster})
        await asyncio.sleep(2)
        idle = delta(idle_before, tree_seconds({"postgres": postmaster}))["postgres"] / 2
        notes.append(f"PostgreSQL's CPU is the whole cluster's (postmaster {postmaster} and its children); "
                     f"before the bench's servers started it used {idle * 1000:.0f} ms of CPU per second "
                     "on its own (other work on the cluster counts in the PostgreSQL figures)")
    trees = ([tree_of("before", args.before.resolve())] if args.before else []) + [tree_of("after", REPO)]

    # (0)-(3): uncached
    contenders = start_fature(trees, args.port, robust_url, tokens, cache=False, notes=notes)
    try:
        contenders += start_pgl(args, robust_url, notes)
        contenders = probe(contenders, sizes, tokens, notes)
        fature_contenders = [c for c in contenders if c.fature]
        single: dict[tuple[str, str], tuple[float, float]] = {}
        if not args.skip_single:
            for label, affiliate_id in sizes:
                for c in fature_contenders:
                    single[(c.name, label)] = single_client(c.server.port, c.request(affiliate_id, label),
                                                            args.requests)
                row(f"dashboard uncached, 1 client, {label} affiliate {affiliate_id} "
                    f"(network {picked[label + '_size']:,}), p50 / p99 ms",
                    "; ".join(f"{c.name} {single[(c.name, label)][0]:.2f} / {single[(c.name, label)][1]:.2f}"
                              for c in fature_contenders))
            admin = token("admin")
            listed = []
            for c in fature_contenders:
                if not c.trusted:
                    p50, p99 = single_client(c.server.port, post(c.server.port, "/graphql", {"query": LIST_QUERY},
                                                                 admin, "list"), max(100, args.requests // 4))
                    listed.append(f"{c.name} {p50:.2f} / {p99:.2f}")
            row("100-affiliate list with five levels (admin token), uncached, 1 client, p50 / p99 ms",
                "; ".join(listed))
        uncached = rounds_of(contenders, sizes, args.rounds, args.seconds, postmaster, notes,
                             "uncached, 32 clients")
        after_plain = next((c for c in fature_contenders if c.name == "after plain"), None)
        if not args.skip_old and after_plain is not None:
            old_median, old_times = await old_flow(operation_url, largest)
            ours_p50 = single.get(("after plain", "largest"), (0.0, 0.0))[0] or single_client(
                after_plain.server.port, after_plain.request(largest, "largest"), 100)[0]
            row(f"old flow (recursive query on the operation DB, 3 queries), affiliate {largest}",
                f"{old_median * 1000:,.0f} ms (median of {len(old_times)}) vs Fature after plain "
                f"{ours_p50:.2f} ms: {old_median * 1000 / ours_p50:,.0f}x faster")
    finally:
        stop_all(contenders)

    # (4): cached, 32 clients, Fature's contenders
    cached: dict[tuple[str, str], list[Round]] = {}
    if not args.skip_cached:
        cached_contenders = start_fature(trees, args.port, robust_url, tokens, cache=True, notes=notes)
        try:
            cached = rounds_of(cached_contenders, sizes, args.rounds, args.seconds, postmaster, notes,
                               "cached, 32 clients")
        finally:
            stop_all(cached_contenders)

    # (5): bounded mixed load with rate limits on and an ETL cycle in the middle
    if not args.skip_load:
        await load_run(args, args.port, robust_url, operation_url, picked["load_ids"], row, notes)

    report_table(started, picked, rows, [c.name for c in contenders], uncached, cached, notes)


# ------------------------------------------------------------------ the report


def _cell(found: list[Round] | None, figure: Callable[[Round], str]) -> str:
    return figure(median_round(found)) if found else "—"


def _rps_cell(found: list[Round] | None) -> str:
    """The median req/s and, over several rounds, their range."""
    if not found:
        return "—"
    text = f"{median_round(found).rps:,.0f}"
    if len(found) > 1:
        text += f" ({min(r.rps for r in found):,.0f}-{max(r.rps for r in found):,.0f})"
    return text


def _ratio(ours: float, theirs: float) -> str:
    return f"{ours / theirs:.2f}x" if theirs and theirs == theirs and ours == ours else "—"


def report_table(started: float, picked: dict[str, Any], rows: list[tuple[str, str]], names: list[str],
                 uncached: dict[tuple[str, str], list[Round]], cached: dict[tuple[str, str], list[Round]],
                 notes: list[str]) -> None:
    small, largest = picked["small"], picked["largest"]
    print()
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}; {datetime.now().astimezone():%Y-%m-%d %H:%M %Z}; "
          f"bench took {time.time() - started:.0f} s")
    print(f"affiliates: small {small} (network {picked['small_size']:,}), largest {largest} "
          f"(network {picked['largest_size']:,})")
    if rows:
        print()
        print("| measurement | result |")
        print("|---|---|")
        for what, value in rows:
            print(f"| {what} | {value} |")
    sizes = (("small", picked["small_size"]), ("largest", picked["largest_size"]))
    phases = (("uncached", uncached), ("cached", cached))
    if names:
        n = max((len(v) for v in uncached.values()), default=0)
        print()
        print(f"Dashboard at 32 clients (median of {n} alternating rounds; CPU: ms per answered request, "
              "the server's processes + PostgreSQL's = total)")
        print()
        print("| dashboard, 32 clients | " + " | ".join(names) + " |")
        print("|---" * (len(names) + 1) + "|")
        for phase, results in phases:
            if not results:
                continue
            for label, size in sizes:
                head = f"{label} (network {size:,}), {phase}"
                print(f"| {head}: req/s (range over rounds) | "
                      + " | ".join(_rps_cell(results.get((name, label))) for name in names) + " |")
                for what, figure in (
                    ("p50 / p99 ms", lambda r: f"{r.p50:.1f} / {r.p99:.1f}"),
                    ("CPU ms/req", lambda r: f"{r.server_ms:.2f} + {r.postgres_ms:.2f} = "
                                             f"{r.server_ms + r.postgres_ms:.2f}"),
                ):
                    print(f"| {head}: {what} | "
                          + " | ".join(_cell(results.get((name, label)), figure) for name in names) + " |")
        print()
        print("| CPU per answered request (ms) | server | PostgreSQL | total |")
        print("|---|---|---|---|")
        for phase, results in phases:
            for label, _ in sizes:
                for name in names:
                    if (name, label) in results:
                        r = median_round(results[(name, label)])
                        print(f"| {label}, {phase}, {name} | {r.server_ms:.2f} | {r.postgres_ms:.2f} | "
                              f"{r.server_ms + r.postgres_ms:.2f} |")
        print()
        for line in ratio_lines(uncached, cached):
            print(line)
    for note in notes:
        print(f"- {note}")


def ratio_lines(uncached: dict[tuple[str, str], list[Round]],
                cached: dict[tuple[str, str], list[Round]]) -> list[str]:
    """after / PostGraphile 5 (and 4) per size and path; after / before per size, path and phase."""
    lines: list[str] = []

    def med(results: dict[tuple[str, str], list[Round]], name: str, label: str) -> Round | None:
        return median_round(results[(name, label)]) if (name, label) in results else None

    for label in ("small", "largest"):
        for path in ("plain", "trusted"):
            ours = med(uncached, f"after {path}", label)
            if ours is None:
                continue
            for peer in ("PostGraphile 5", "PostGraphile 4"):
                theirs = med(uncached, peer, label)
                if theirs is not None:
                    lines.append(
                        f"ratio {label}, uncached, after {path} / {peer}: throughput "
                        f"{_ratio(ours.rps, theirs.rps)}; p99 {ours.p99:.1f} vs {theirs.p99:.1f} ms "
                        f"({_ratio(ours.p99, theirs.p99)}); CPU/req {ours.server_ms + ours.postgres_ms:.2f} vs "
                        f"{theirs.server_ms + theirs.postgres_ms:.2f} ms "
                        f"({_ratio(ours.server_ms + ours.postgres_ms, theirs.server_ms + theirs.postgres_ms)})")
            for phase, results in (("uncached", uncached), ("cached", cached)):
                after, before = med(results, f"after {path}", label), med(results, f"before {path}", label)
                if after is not None and before is not None:
                    lines.append(
                        f"ratio {label}, {phase}, {path}, after / before: throughput "
                        f"{_ratio(after.rps, before.rps)} ({after.rps:,.0f} vs {before.rps:,.0f} req/s); "
                        f"p99 {_ratio(after.p99, before.p99)} ({after.p99:.1f} vs {before.p99:.1f} ms); "
                        f"CPU/req {_ratio(after.server_ms + after.postgres_ms, before.server_ms + before.postgres_ms)}")
    return lines


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
