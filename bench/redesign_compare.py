"""The code before a redesign against the code after it, alternating in one run.

    .venv/bin/python -m bench.redesign_compare --before /tmp/fature-before [--after /work/main]
        [--rounds 6] [--requests 400] [--etl-rounds 9] [--whole-rounds] [--skip-dashboard]
        [--skip-etl] [--out /tmp/redesign_compare.md]

``--before`` and ``--after`` are two work trees of this repository, each with its own
``.venv`` (``git worktree add /tmp/fature-before <commit>``, then ``python3 -m venv .venv &&
.venv/bin/pip install -e '.[test]'`` inside it). Run ``bench.etl_bench`` first: both trees
are measured against its databases (fature_bench_operation, fature_bench_robust), so they
read exactly the same data. Everything runs on loopback.

Nothing of either tree is imported here: each tree runs in its own processes, with its own
venv's python and the tree as the working directory, so a module moved or renamed by the
redesign cannot break this bench (only the two entry points below are assumed).

1. The dashboard query (``DASHBOARD_QUERY`` of app.py at 8409979, copied below; a note when
   a tree's own copy differs), uncached, one client.
   Two API servers run side by side, one per tree (``uvicorn app:create_app --factory --loop
   uvloop --http httptools``, one worker, no scheduler, no access log, cache and rate limits
   off: the environment of bench/api_bench.py's ``fature()``). Each tree mints the affiliate
   tokens itself (its own ``mint_token``). A small affiliate and the largest are picked as
   bench/api_bench.py picks them; each reads its own dashboard (both trees' answers must be
   equal). Each round keeps one keep-alive connection per tree and alternates single
   requests between them in ABBA order (before, after, after, before, ...; one request in
   flight at a time, so each server sees a single client): ``--warmup`` untimed pairs, then
   ``--requests`` timed ones. Both trees thus see the same moments of a busy machine. The
   figure per tree is the median of its rounds' p50s. ``--whole-rounds`` alternates whole
   rounds instead (ABBA: a round of one tree, then of the other); on a shared 2-core
   machine it was about three times noisier (before against itself: 0.98-1.07, against
   0.98-1.02 interleaved).

2. The 15-minute incremental ETL cycle, both trees on the same state. A committed cycle of
   the before tree first catches the robust database up with the source; then ONE 15-minute
   slice of seed-rate activity (``LIVE_ACTIVITY`` of the before tree's bench/etl_bench.py)
   is appended to the operation database, once. Each measured cycle then runs in a fresh
   process of its tree and is rolled back at its very end (``run_cycle(...,
   fail_after="commit")``, the technique of bench/etl_profile.py), so every cycle reads the
   same delta from the same state; after each one the robust database's fingerprint (the
   cursors, the last successful run, the ledger, the affiliates' totals) is checked to be
   unchanged. Before each cycle (untimed) a VACUUM and a CHECKPOINT of the robust database
   clear what the previous rolled-back cycles left (dead rows, dirty buffers), so each
   cycle also starts from the same physical state (``--no-settle`` skips them). One warm-up
   pair, then ``--etl-rounds`` pairs in ABBA order; the figure per tree is the median wall
   time of ``run_cycle`` (connect, lock, every step; not the process start, not the final
   COMMIT). A last committed cycle of the before tree absorbs
   the slice, so a later run starts from the same kind of state (``--no-absorb`` skips it).

Prints Markdown (paste into BENCHMARKS.md): the machine, both trees' commits, a table of the
medians with after/before ratios, and the ETL's per-step medians. The criterion: the
after/before ratio of each median within 5% (0.95-1.05). Each ratio comes with a 95%
bootstrap interval (rounds resampled), which tells how much of it the machine's noise
could explain: before against itself on a busy 2-core machine (load 2-3 from other work)
gave dashboard ratios of 0.98-1.02 and ETL ratios of 0.96-1.03.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import json
import os
import platform
import random
import signal
import socket
import statistics
import subprocess
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

import asyncpg

REPO = Path(__file__).resolve().parents[1]
LARGEST = 1622968  # the seed-scale database's largest network (as bench/api_bench.py)
JWT_SECRET = "redesign-compare-secret-" + "c" * 48
TOLERANCE = 0.05

# app.py's DASHBOARD_QUERY at 8409979 (without its two comment lines). Copied, not
# imported: each tree's app.py is compared with it at start (a note when they differ).
DASHBOARD_QUERY = """\
query Dashboard($id: ID!) {
  syncStatus { dataAsOf }
  affiliate(id: $id) {
    id name status rankCpa
    totalReferrals totalValidatedReferrals totalNetworkSize
    totalDeposits totalBets totalGgr totalCpaEarned totalRevEarned
    network { totalNetworkSize levels { level count deposits bets ggr cpa rev } }
    summaries(period: DAILY, last: 30) {
      periodStart newReferrals totalDeposits totalBets totalGgr cpaEarned revEarned
    }
    referrals(first: 10) {
      totalCount
      edges { cursor node { referredUserId level referralDate status totalDeposits cpaAmount } }
      pageInfo { hasNextPage endCursor }
    }
  }
}
"""

# Run inside a tree (its venv's python, cwd and PYTHONPATH the tree): one affiliate token per
# id, minted by the tree's own mint_token wherever the tree keeps it.
TOKEN_SNIPPET = r"""
import importlib, json, sys
from datetime import timedelta
from db.settings import Settings
secret, ids = sys.argv[1], [int(i) for i in sys.argv[2:]]
for name in ("web.auth", "resolvers.auth", "auth"):
    try:
        mint = importlib.import_module(name).mint_token
        break
    except (ImportError, AttributeError):
        continue
else:
    raise SystemExit("no mint_token in web.auth, resolvers.auth or auth")
settings = Settings(jwt_secret=secret, _env_file=None)
tokens = {i: mint(settings, "affiliate", i, ttl=timedelta(hours=6)) for i in ids}
print("RESULT " + json.dumps({"module": name, "tokens": tokens}))
"""

# Run inside a tree: one incremental cycle, rolled back at its very end ("rollback") or
# committed ("commit"). run_cycle is looked up and called by its parameters' names, so a
# reordered or extended signature still works; a required parameter it does not know stops
# it with the signature in the message.
CYCLE_SNIPPET = r"""
import asyncio, importlib, inspect, json, resource, sys, time
from db.settings import Settings
robust_url, operation_url, mode, modules = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4].split(",")
for name in modules:
    try:
        run_cycle = importlib.import_module(name).run_cycle
        break
    except (ImportError, AttributeError):
        continue
else:
    raise SystemExit(f"no run_cycle in {modules}")
signature = inspect.signature(run_cycle)
params = signature.parameters

async def main():
    settings = Settings(database_url=robust_url, operation_database_url=operation_url,
                        etl_scheduler_enabled=False, _env_file=None)
    known = {"settings": settings, "robust_url": robust_url, "operation_url": operation_url}
    args, kwargs = [], {}
    for pname, p in params.items():
        if pname in known:
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
                args.append(known[pname])
            else:
                kwargs[pname] = known[pname]
        elif p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise SystemExit(f"{name}.run_cycle{signature}: no value for {pname!r}")
    marks = []
    if "progress" in params:
        kwargs["progress"] = lambda step, *rest: marks.append((step, time.perf_counter()))
    if "trigger" in params:
        kwargs["trigger"] = "bench"
    if "full" in params:
        kwargs["full"] = False
    if mode == "rollback":
        if "fail_after" not in params:
            raise SystemExit(f"{name}.run_cycle{signature} has no fail_after: cannot roll back")
        kwargs["fail_after"] = "commit"
    outcome = "committed"
    started = time.perf_counter()
    try:
        result = run_cycle(*args, **kwargs)
        if inspect.isawaitable(result):
            await result
    except Exception as exc:
        if mode != "rollback" or type(exc).__name__ != "InjectedFailure":
            raise
        outcome = "rolled back"
    elapsed = time.perf_counter() - started
    steps, last = {}, started
    for step, at in marks:
        steps[step] = at - last
        last = at
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps({"seconds": elapsed, "outcome": outcome, "steps": steps,
                                  "module": name, "rss_mb": rss}))

asyncio.run(main())
"""

# What a rolled-back cycle must leave as it found it (cheap enough to read after each cycle).
FINGERPRINT = [
    "SELECT coalesce(json_agg(c ORDER BY source_table)::text, '') FROM "
    "(SELECT source_table, cursor_ts FROM etl.sync_cursors) c",
    "SELECT max(id) FROM etl.runs WHERE status = 'success'",
    "SELECT count(*) FROM etl.runs WHERE status = 'running'",
    "SELECT count(*)::text || ' / ' || coalesce(max(id), 0)::text FROM affiliate_cpa_validations",
    "SELECT count(*)::text || ' / ' || coalesce(sum(total_network_size), 0)::text || ' / '"
    " || coalesce(sum(total_deposits), 0)::text || ' / ' || coalesce(sum(total_bets), 0)::text"
    " || ' / ' || coalesce(sum(total_cpa_earned), 0)::text FROM affiliates",
]

T = TypeVar("T")


class Runner(Protocol):
    """Runs a coroutine to completion on the bench's event loop."""

    def __call__(self, coro: Coroutine[Any, Any, T], /) -> T: ...


# ------------------------------------------------------------------ the two trees


@dataclass
class Tree:
    side: str  # "before" or "after"
    path: Path
    python: Path
    info: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FATURE_") and k != "PYTHONPATH"}
        env["PYTHONPATH"] = str(self.path)
        env.update(extra or {})
        return env

    def run_snippet(self, snippet: str, *argv: str, timeout: float = 600) -> dict[str, Any]:
        """Run ``snippet`` in this tree; its last ``RESULT {json}`` line is the answer."""
        done = subprocess.run(
            [str(self.python), "-c", snippet, *argv], cwd=self.path, env=self.env(),
            capture_output=True, text=True, timeout=timeout, check=False,
        )
        for line in reversed(done.stdout.splitlines()):
            if line.startswith("RESULT "):
                return json.loads(line[len("RESULT "):])
        raise RuntimeError(f"{self.side} tree ({self.path}): exit {done.returncode}\n"
                           f"{done.stdout[-2000:]}\n{done.stderr[-3000:]}")


def git(path: Path, *args: str) -> str:
    done = subprocess.run(["git", "--no-optional-locks", "-C", str(path), *args],
                          capture_output=True, text=True, check=False)
    return done.stdout.strip()


def describe_tree(tree: Tree) -> None:
    head = git(tree.path, "rev-parse", "--short", "HEAD")
    changed = [line for line in git(tree.path, "status", "--porcelain", "--untracked-files=no").splitlines()
               if line[3:] and not line[3:].startswith("bench/redesign_compare.py")]
    tree.info["commit"] = head + (f" + uncommitted changes in {len(changed)} files" if changed else "")
    tree.info["subject"] = git(tree.path, "log", "-1", "--format=%s")[:90]
    tree.info["migrations head"] = migrations_head(tree.path) or "?"
    where, query = find_constant(tree.path, "DASHBOARD_QUERY")
    if query is None:
        tree.notes.append(f"{tree.side}: no DASHBOARD_QUERY found in the tree; the bench's copy is sent")
    elif strip_comments(query) != strip_comments(DASHBOARD_QUERY):
        tree.notes.append(f"{tree.side}: {where}'s DASHBOARD_QUERY differs from the bench's copy "
                          "(the bench's copy is sent to both)")


def find_constant(root: Path, name: str) -> tuple[str, str | None]:
    """Where the tree defines a module-level string ``name`` (app.py first), and its value."""
    files = [root / "app.py"]
    for folder, subfolders, names in os.walk(root):
        subfolders[:] = sorted(d for d in subfolders
                               if not d.startswith(".") and d not in {"bench", "tests", "node_modules"})
        files += [Path(folder) / n for n in sorted(names) if n.endswith(".py")]
    for file in files:
        if file.exists() and f"{name} =" in file.read_text(errors="replace"):
            value = module_constant(file, name)
            if value is not None:
                return str(file.relative_to(root)), value
    # Since issue 12 the dashboard query is a document file (web/documents/Dashboard.graphql).
    document = root / "web" / "documents" / "Dashboard.graphql"
    if name == "DASHBOARD_QUERY" and document.exists():
        return str(document.relative_to(root)), document.read_text(encoding="utf-8")
    return "", None


def module_constant(path: Path, name: str) -> str | None:
    """A module-level string constant, read without importing the module."""
    try:
        module = ast.parse(path.read_text())
    except (OSError, SyntaxError):
        return None
    for node in module.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            try:
                value = ast.literal_eval(node.value)
            except ValueError:  # not a literal (e.g. read from a file): see find_constant
                return None
            return value if isinstance(value, str) else None
    return None


def strip_comments(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")).strip()


def migrations_head(path: Path) -> str | None:
    """The alembic head of a tree: the revision no other revision names as its down_revision."""
    revisions, downs = set(), set()
    for file in sorted((path / "db" / "migrations" / "versions").glob("*.py")):
        rev = module_constant(file, "revision")
        if rev:
            revisions.add(rev)
        down = module_constant(file, "down_revision")
        if down:
            downs.add(down)
    heads = sorted(revisions - downs)
    return ", ".join(heads) if heads else None


# ------------------------------------------------------------------ statistics, output


def median(values: list[float]) -> float:
    return statistics.median(values)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def abba(pairs: int) -> list[str]:
    """before, after, after, before, before, after, ... (2 * pairs entries)."""
    order: list[str] = []
    for n in range(pairs):
        order += ["before", "after"] if n % 2 == 0 else ["after", "before"]
    return order


def ratio_interval(before: list[float], after: list[float], draws: int = 4000) -> str:
    """A 95% bootstrap interval of median(after) / median(before) (each side resampled)."""
    rng = random.Random(0)
    ratios = sorted(median(rng.choices(after, k=len(after))) / median(rng.choices(before, k=len(before)))
                    for _ in range(draws))
    return f"95% interval {ratios[int(0.025 * draws)]:.3f}-{ratios[int(0.975 * draws) - 1]:.3f}"


def verdict(ratio: float) -> str:
    return "within 5%" if abs(ratio - 1) <= TOLERANCE else "**not within 5%**"


def spread(values: list[float], scale: float, unit: str, digits: int) -> str:
    return f"{min(values) * scale:.{digits}f}-{max(values) * scale:.{digits}f} {unit}"


# ------------------------------------------------------------------ the dashboard


def port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


class Server:
    """One tree's uvicorn (its venv, cwd the tree), started and stopped by this process."""

    def __init__(self, tree: Tree, port: int, robust_url: str) -> None:
        if not port_free(port):
            raise RuntimeError(f"127.0.0.1:{port} is taken: pick other ports (--ports)")
        self.tree, self.port = tree, port
        self.log_path = Path(f"/tmp/redesign_compare_{tree.side}_{port}.log")
        self.log = self.log_path.open("w")
        env = tree.env({
            "FATURE_DATABASE_URL": robust_url,
            "FATURE_JWT_SECRET": JWT_SECRET,
            "FATURE_ETL_SCHEDULER_ENABLED": "false",
            "FATURE_ACCESS_LOG": "false",
            "FATURE_CACHE_ENABLED": "false",
            "FATURE_RATE_LIMIT_ENABLED": "false",
        })
        argv = [str(tree.python), "-m", "uvicorn", "app:create_app", "--factory", "--loop", "uvloop",
                "--http", "httptools", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
                "--no-access-log", "--log-level", "warning"]
        self.process = subprocess.Popen(argv, env=env, cwd=tree.path, stdout=self.log,
                                        stderr=subprocess.STDOUT, start_new_session=True)

    def wait(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the {self.tree.side} server exited: see {self.log_path}")
            if not port_free(self.port):
                return
            time.sleep(0.2)
        raise RuntimeError(f"the {self.tree.side} server does not answer: see {self.log_path}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.log.close()


def request(port: int, affiliate_id: int, token: str) -> bytes:
    body = json.dumps({"query": DASHBOARD_QUERY, "variables": {"id": str(affiliate_id)},
                       "operationName": "Dashboard"}).encode()
    head = (f"POST /graphql HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"Accept: application/json\r\nAuthorization: Bearer {token}\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: bytes) -> tuple[int, bytes]:
    """One HTTP/1.1 request on a keep-alive connection (as bench/api_bench.py's client)."""
    writer.write(raw)
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length, chunked = 0, False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if not chunked:
        return status, await reader.readexactly(length)
    parts = []
    for _ in range(100_000):
        size = int((await reader.readuntil(b"\r\n")).strip().split(b";")[0], 16)
        chunk = await reader.readexactly(size + 2)
        if size == 0:
            break
        parts.append(chunk[:-2])
    return status, b"".join(parts)


def check(status: int, body: bytes, what: str) -> None:
    if status != 200 or b'"errors"' in body:
        raise RuntimeError(f"{what}: HTTP {status} {body[:300]!r}")


async def one_answer(port: int, raw: bytes, what: str) -> Any:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        status, body = await exchange(reader, writer, raw)
    finally:
        writer.close()
    check(status, body, what)
    return json.loads(body)["data"]


async def timed_round(port: int, raw: bytes, warmup: int, n: int, what: str) -> list[float]:
    """``warmup`` untimed requests, then ``n`` timed ones, one at a time on one connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    latencies = []
    try:
        for _ in range(warmup):
            check(*await exchange(reader, writer, raw), what)
        for _ in range(n):
            started = time.perf_counter()
            status, body = await exchange(reader, writer, raw)
            latencies.append(time.perf_counter() - started)
            check(status, body, what)
    finally:
        writer.close()
    return latencies


async def interleaved_round(targets: dict[str, tuple[int, bytes]], warmup: int, n: int,
                            what: str) -> dict[str, list[float]]:
    """One connection per tree; requests alternate between them (ABBA), one in flight at a time."""
    conns = {side: await asyncio.open_connection("127.0.0.1", port) for side, (port, _) in targets.items()}
    latencies: dict[str, list[float]] = {side: [] for side in targets}
    try:
        for i in range(warmup + n):
            for side in (("before", "after") if i % 4 in (0, 3) else ("after", "before")):
                reader, writer = conns[side]
                started = time.perf_counter()
                status, body = await exchange(reader, writer, targets[side][1])
                if i >= warmup:
                    latencies[side].append(time.perf_counter() - started)
                check(status, body, f"{side} {what}")
    finally:
        for _, writer in conns.values():
            writer.close()
    return latencies


async def pick_affiliates(robust_url: str) -> list[tuple[str, int, int]]:
    """A small affiliate with 30 daily summaries and the largest (bench/api_bench.py's picks)."""
    conn = await asyncpg.connect(robust_url)
    try:
        small = await conn.fetchrow(
            "SELECT a.affiliate_id, a.total_network_size FROM affiliates a "
            "WHERE a.total_network_size BETWEEN 5 AND 30 "
            "AND (SELECT count(*) FROM affiliate_periodic_summaries s WHERE s.affiliate_id = a.affiliate_id "
            "     AND s.period_type = 'daily') >= 30 ORDER BY a.affiliate_id LIMIT 1"
        )
        largest = await conn.fetchrow(
            "SELECT affiliate_id, total_network_size FROM affiliates WHERE affiliate_id = $1", LARGEST
        ) or await conn.fetchrow(
            "SELECT affiliate_id, total_network_size FROM affiliates ORDER BY total_network_size DESC LIMIT 1"
        )
    finally:
        await conn.close()
    if small is None or largest is None:
        raise RuntimeError("no affiliates to read: run bench.etl_bench first")
    return [("small", small[0], small[1]), ("largest", largest[0], largest[1])]


def dashboard(args: argparse.Namespace, trees: dict[str, Tree], run: Runner,
              rows: list[list[str]], notes: list[str]) -> None:
    picks = run(pick_affiliates(args.robust_url))
    ids = [str(affiliate_id) for _, affiliate_id, _ in picks]
    tokens = {}
    for side, tree in trees.items():
        minted = tree.run_snippet(TOKEN_SNIPPET, JWT_SECRET, *ids)
        tree.info["tokens minted by"] = f"{minted['module']}.mint_token"
        tokens[side] = minted["tokens"]
    servers: dict[str, Server] = {}
    try:
        for side, port in zip(("before", "after"), args.ports, strict=True):
            servers[side] = Server(trees[side], port, args.robust_url)
        for server in servers.values():
            server.wait()
        raws = {(side, name): request(servers[side].port, affiliate_id, tokens[side][str(affiliate_id)])
                for side in servers for name, affiliate_id, _ in picks}
        # Both trees must give the same answer (the data, not only a 200).
        for name, affiliate_id, _ in picks:
            answers = {side: run(one_answer(servers[side].port, raws[side, name], f"{side} {name}"))
                       for side in servers}
            if answers["before"] != answers["after"]:
                notes.append(f"the dashboard of {name} affiliate {affiliate_id} differs between the trees")
        p50s: dict[tuple[str, str], list[float]] = {}
        p99s: dict[tuple[str, str], list[float]] = {}

        def record(side: str, name: str, lat: list[float]) -> None:
            p50s.setdefault((side, name), []).append(median(lat))
            p99s.setdefault((side, name), []).append(pct(lat, 0.99))

        if args.interleave:
            for n in range(args.rounds):
                for name, _, _ in picks:
                    targets = {side: (servers[side].port, raws[side, name]) for side in servers}
                    for side, lat in run(interleaved_round(targets, args.warmup, args.requests, name)).items():
                        record(side, name, lat)
                print(f"dashboard round {n + 1} (interleaved): " + ", ".join(
                    f"{name} p50 {p50s['before', name][-1] * 1000:.3f} / {p50s['after', name][-1] * 1000:.3f} ms"
                    for name, _, _ in picks), flush=True)
        else:
            for n, side in enumerate(abba(args.rounds)):
                for name, _, _ in picks:
                    record(side, name, run(timed_round(servers[side].port, raws[side, name], args.warmup,
                                                       args.requests, f"{side} {name}")))
                print(f"dashboard round {n // 2 + 1} {side}: "
                      + ", ".join(f"{name} p50 {p50s[side, name][-1] * 1000:.3f} ms" for name, _, _ in picks),
                      flush=True)
    finally:
        for server in servers.values():
            server.stop()
    for name, affiliate_id, size in picks:
        before, after = median(p50s["before", name]), median(p50s["after", name])
        rows.append([
            f"dashboard uncached, 1 client, {name} affiliate {affiliate_id} (network {size:,}): p50, "
            f"median of {args.rounds} rounds × {args.requests}"
            + (", requests interleaved" if args.interleave else ""),
            f"{before * 1000:.3f} ms", f"{after * 1000:.3f} ms", f"{after / before:.3f}", verdict(after / before),
            f"{ratio_interval(p50s['before', name], p50s['after', name])}; "
            f"before {spread(p50s['before', name], 1000, 'ms', 3)}, after {spread(p50s['after', name], 1000, 'ms', 3)}; "
            f"p99 {median(p99s['before', name]) * 1000:.2f} / {median(p99s['after', name]) * 1000:.2f} ms",
        ])


# ------------------------------------------------------------------ the ETL cycle


async def fingerprint(robust_url: str) -> list[str]:
    conn = await asyncpg.connect(robust_url)
    try:
        return [str(await conn.fetchval(sql)) for sql in FINGERPRINT]
    finally:
        await conn.close()


async def settle(robust_url: str) -> None:
    """Before each measured cycle: clear the dead rows of the cycles rolled back before it
    (the bench server runs without autovacuum) and write out the dirty buffers, so no cycle
    pays for its predecessors."""
    conn = await asyncpg.connect(robust_url)
    try:
        await conn.execute("VACUUM")
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


async def append_slice(operation_url: str, sql: str) -> dict[str, int]:
    """Append the slice (one transaction) and count the rows it added per source table."""
    conn = await asyncpg.connect(operation_url)
    tables = ("cadastro", "tracked", "depositos", "casino_bets_v")
    try:
        before = {t: await conn.fetchval(f"SELECT max(id) FROM {t}") or 0 for t in tables}
        async with conn.transaction():
            await conn.execute(sql)
        return {t: await conn.fetchval(f"SELECT count(*) FROM {t} WHERE id > $1", before[t]) for t in tables}
    finally:
        await conn.close()


def etl_cycles(args: argparse.Namespace, trees: dict[str, Tree], run: Runner,
               rows: list[list[str]], notes: list[str]) -> list[str]:
    modules = args.cycle_modules

    def cycle(side: str, mode: str) -> dict[str, Any]:
        result = trees[side].run_snippet(CYCLE_SNIPPET, args.robust_url, args.operation_url, mode, modules)
        expected = "rolled back" if mode == "rollback" else "committed"
        if result["outcome"] != expected:
            raise RuntimeError(f"{side}: the cycle was {result['outcome']}, not {expected}")
        trees[side].info["run_cycle"] = f"{result['module']}.run_cycle"
        return result

    sql = module_constant(trees["before"].path / "bench" / "etl_bench.py", "LIVE_ACTIVITY")
    if sql is None:
        raise RuntimeError("the before tree's bench/etl_bench.py has no LIVE_ACTIVITY")
    caught_up = cycle("before", "commit")
    print(f"catch-up cycle (before tree, committed): {caught_up['seconds']:.3f} s", flush=True)
    added = run(append_slice(args.operation_url, sql))
    print(f"appended one 15-minute slice: {added}", flush=True)
    state = run(fingerprint(args.robust_url))

    times: dict[str, list[float]] = {"before": [], "after": []}
    rss: dict[str, list[float]] = {"before": [], "after": []}
    steps: dict[str, dict[str, list[float]]] = {"before": {}, "after": {}}
    warm: list[str] = []
    try:
        for n, side in enumerate(["before", "after"] + abba(args.etl_rounds)):
            if not args.no_settle:
                run(settle(args.robust_url))
            result = cycle(side, "rollback")
            now = run(fingerprint(args.robust_url))
            if now != state:
                raise RuntimeError(f"the robust database changed after a rolled-back {side} cycle: {state} -> {now}")
            label = "warm-up" if n < 2 else f"round {(n - 2) // 2 + 1}"
            print(f"ETL {label} {side}: {result['seconds']:.3f} s (rolled back; robust DB unchanged)", flush=True)
            if n < 2:
                warm.append(f"{side} {result['seconds']:.3f} s")
                continue
            times[side].append(result["seconds"])
            rss[side].append(result["rss_mb"])
            for step, seconds in result["steps"].items():
                steps[side].setdefault(step, []).append(seconds)
    finally:
        # Also when a cycle failed: a later run must not find this slice still waiting.
        if not args.no_absorb:
            absorbed = cycle("before", "commit")
            print(f"the slice absorbed (before tree, committed): {absorbed['seconds']:.3f} s", flush=True)
            notes.append(f"afterwards a committed cycle of the before tree absorbed the slice "
                         f"({absorbed['seconds']:.3f} s, with its COMMIT)")

    before, after = median(times["before"]), median(times["after"])
    rows.append([
        f"15-minute ETL cycle (one slice: {added['casino_bets_v']:,} bets, {added['depositos']:,} deposits, "
        f"{added['tracked']:,} referrals, 200 status changes), rolled back at its end, median of {args.etl_rounds}",
        f"{before:.3f} s", f"{after:.3f} s", f"{after / before:.3f}", verdict(after / before),
        f"{ratio_interval(times['before'], times['after'])}; "
        f"before {spread(times['before'], 1, 's', 3)}, after {spread(times['after'], 1, 's', 3)}; "
        f"warm-up {', '.join(warm)}; peak RSS {median(rss['before']):.0f} / {median(rss['after']):.0f} MB",
    ])
    notes.append("each rolled-back cycle left the robust database's fingerprint unchanged "
                 "(cursors, last successful run, ledger, affiliates' totals); each left a 'failed' "
                 "row in etl.runs ('injected failure after commit'), as bench/etl_profile.py's do")

    step_lines = ["| step (median seconds) | before | after |", "|---|---|---|"]
    ordered = list(steps["before"]) + [s for s in steps["after"] if s not in steps["before"]]
    for step in ordered:
        b = f"{median(steps['before'][step]):.3f}" if step in steps["before"] else ""
        a = f"{median(steps['after'][step]):.3f}" if step in steps["after"] else ""
        step_lines.append(f"| {step} | {b} | {a} |")
    return step_lines


# ------------------------------------------------------------------ main


async def server_facts(robust_url: str) -> dict[str, str]:
    conn = await asyncpg.connect(robust_url)
    try:
        version = await conn.fetchval("SHOW server_version")
        revision = await conn.fetchval(
            "SELECT CASE WHEN to_regclass('public.alembic_version') IS NULL THEN NULL "
            "ELSE (SELECT string_agg(version_num, ', ') FROM alembic_version) END"
        )
        return {"postgres": str(version), "revision": str(revision)}
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, required=True, help="work tree of the code before")
    parser.add_argument("--after", type=Path, default=REPO, help="work tree of the code after (default: this one)")
    parser.add_argument("--before-python", type=Path, help="default: BEFORE/.venv/bin/python")
    parser.add_argument("--after-python", type=Path, help="default: AFTER/.venv/bin/python")
    parser.add_argument("--base-url", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--robust", default="fature_bench_robust")
    parser.add_argument("--operation", default="fature_bench_operation")
    parser.add_argument("--ports", type=int, nargs=2, default=[8771, 8772], metavar=("BEFORE", "AFTER"))
    parser.add_argument("--rounds", type=int, default=6, help="dashboard rounds per tree")
    parser.add_argument("--requests", type=int, default=400, help="timed requests per round")
    parser.add_argument("--warmup", type=int, default=50, help="untimed requests per round")
    parser.add_argument("--whole-rounds", dest="interleave", action="store_false",
                        help="dashboard: alternate whole rounds (ABBA) instead of single requests")
    parser.add_argument("--etl-rounds", type=int, default=9, help="ETL cycles per tree (after a warm-up each)")
    parser.add_argument("--cycle-modules", default="etl.sync,etl.cycle,etl.run,etl",
                        help="where each tree's run_cycle is looked for, in order")
    parser.add_argument("--no-settle", action="store_true",
                        help="no VACUUM and CHECKPOINT of the robust database before each cycle")
    parser.add_argument("--no-absorb", action="store_true",
                        help="leave the slice unabsorbed (a later run then reads two slices)")
    parser.add_argument("--skip-dashboard", action="store_true")
    parser.add_argument("--skip-etl", action="store_true")
    parser.add_argument("--out", type=Path, help="also write the Markdown here")
    args = parser.parse_args()
    args.robust_url = f"{args.base_url}/{args.robust}"
    args.operation_url = f"{args.base_url}/{args.operation}"
    if not any(h in args.base_url for h in ("@127.0.0.1", "@localhost", "@[::1]")):
        parser.error("--base-url must be on loopback")
    if args.rounds < 1 or args.etl_rounds < 1 or args.requests < 1:
        parser.error("--rounds, --etl-rounds and --requests must be positive")

    trees = {}
    for side in ("before", "after"):
        path: Path = getattr(args, side).resolve()
        python = getattr(args, f"{side}_python") or path / ".venv" / "bin" / "python"
        if not (path / "app.py").exists() or not Path(python).exists():
            parser.error(f"--{side} {path}: no app.py or no {python}")
        trees[side] = Tree(side, path, Path(python))
        describe_tree(trees[side])

    started = time.time()
    load_start = os.getloadavg()
    rows: list[list[str]] = []
    notes: list[str] = []
    step_lines: list[str] = []
    try:
        import uvloop

        loop_factory: Any = uvloop.new_event_loop
    except ImportError:
        loop_factory = None
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        facts = runner.run(server_facts(args.robust_url))
        for tree in trees.values():
            if tree.info["migrations head"] != facts["revision"]:
                tree.notes.append(f"{tree.side}: its migrations end at {tree.info['migrations head']}, "
                                  f"the robust database is at {facts['revision']}")
        if not args.skip_dashboard:
            dashboard(args, trees, runner.run, rows, notes)
        if not args.skip_etl:
            step_lines = etl_cycles(args, trees, runner.run, rows, notes)

    load_end = os.getloadavg()
    lines = [
        f"### Before/after the redesign, alternating in one run ({datetime.now().astimezone():%Y-%m-%d %H:%M %Z})",
        "",
        f"`python -m bench.redesign_compare --before {trees['before'].path} --after {trees['after'].path}`; "
        f"machine: {platform.node()}, {platform.platform()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, PostgreSQL {facts['postgres']}; load average "
        f"{load_start[0]:.2f} at the start, {load_end[0]:.2f} at the end; {time.time() - started:.0f} s.",
        f"Databases: {args.robust} (revision {facts['revision']}), {args.operation}.",
        "",
        "| tree | path | commit | run_cycle | tokens | migrations head |",
        "|---|---|---|---|---|---|",
    ]
    for tree in trees.values():
        lines.append(f"| {tree.side} | {tree.path} | {tree.info['commit']} ({tree.info['subject']}) | "
                     f"{tree.info.get('run_cycle', '')} | {tree.info.get('tokens minted by', '')} | "
                     f"{tree.info['migrations head']} |")
    lines += ["", "| measurement | before | after | after/before | criterion (±5%) | the ratio's spread, rounds, p99 |",
              "|---|---|---|---|---|---|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    if step_lines:
        lines += ["", "The ETL cycle's steps (medians of the measured rounds; the cycle ends before COMMIT):",
                  "", *step_lines]
    all_notes = [n for tree in trees.values() for n in tree.notes] + notes
    if all_notes:
        lines += ["", *[f"- {note}" for note in all_notes]]
    text = "\n".join(lines)
    print()
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
