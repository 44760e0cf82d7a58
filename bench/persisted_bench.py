"""The dashboard sent in full against the same dashboard as a persisted operation, side by side
in one run, on a running server.

    .venv/bin/python -m bench.persisted_bench --robust-url postgresql://postgres@127.0.0.1:5432/DB
        [--affiliate ID] [--rounds 6] [--seconds 3] [--clients 8]

Starts Fature (one uvicorn worker, uvloop + httptools, response cache off, rate limits off, no
access log; ``FATURE_TRUSTED_DOCUMENTS_PATH`` = the shipped example manifest, web/documents,
mode ``off``) on an ETL-built robust database, then measures, for an affiliate's own token and
its dashboard (web/graphiql.py's ``DASHBOARD_QUERY``):

- ``full``: POST with the query text (what a client without persisted queries sends);
- ``apq POST``: POST with ``extensions.persistedQuery`` only (registered once before);
- ``apq GET``: Apollo's ``useGETForHashedQueries``: a GET whose URL carries the hash;
- ``trusted POST``: POST with the manifest's hash of the dashboard.

Each round measures the latency with one client sending the four variants in turn (requests
interleaved, ``--seconds`` x 4: the machine's noise falls on all of them alike; the round's
median per variant), then each variant alone with ``--clients`` clients for ``--seconds``
(requests/s; the order rotates each round). The figures are the medians over the rounds; bytes sent are the request's body and the whole
HTTP/1.1 request (head included). The clients run in their own process (bench/api_bench.py's
load generator: raw HTTP/1.1 keep-alive). Reads only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import time
from pathlib import Path
from urllib.parse import urlencode

import asyncpg

from bench.api_bench import JWT_SECRET, Target, drive, fature, post
from db.settings import Settings
from web.auth import mint_token
from web.graphiql import DASHBOARD_QUERY
from web.manifest import read_manifest, sha256_hex

REPO = Path(__file__).resolve().parents[1]
MANIFEST = REPO / "web" / "documents" / "manifest.json"
PORT = 8931


def get(port: int, query: dict[str, str], token: str, label: str) -> Target:
    head = (f"GET /graphql?{urlencode(query)} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Accept: application/json\r\nAuthorization: Bearer {token}\r\n\r\n")
    return Target(label, head.encode())


def body_bytes(target: Target) -> int:
    head, _, body = target.raw.partition(b"\r\n\r\n")
    return len(body) if body else len(head.split(b" ", 2)[1])  # a GET's: its URL


async def largest_affiliate(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval(
            "SELECT affiliate_id FROM affiliates ORDER BY total_network_size DESC, affiliate_id LIMIT 1"))
    finally:
        await conn.close()


def targets(port: int, token: str, affiliate: int) -> list[Target]:
    variables = {"id": str(affiliate)}
    sha256 = sha256_hex(DASHBOARD_QUERY)
    trusted = next(o for o in read_manifest(MANIFEST) if o.name == "Dashboard")
    persisted = {"persistedQuery": {"version": 1, "sha256Hash": sha256}}
    return [
        post(port, "/graphql", {"query": DASHBOARD_QUERY, "variables": variables, "operationName": "Dashboard"},
             token, "full"),
        post(port, "/graphql", {"variables": variables, "operationName": "Dashboard", "extensions": persisted},
             token, "apq POST"),
        get(port, {"operationName": "Dashboard", "variables": json.dumps(variables),
                   "extensions": json.dumps(persisted)}, token, "apq GET"),
        post(port, "/graphql", {"variables": variables, "operationName": "Dashboard",
                                "extensions": {"persistedQuery": {"version": 1, "sha256Hash": trusted.id}}},
             token, "trusted POST"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--robust-url", required=True)
    parser.add_argument("--affiliate", type=int, default=None, help="Default: the largest network.")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    affiliate = args.affiliate or asyncio.run(largest_affiliate(args.robust_url))
    settings = Settings(jwt_secret=JWT_SECRET, _env_file=None)
    token = mint_token(settings, "affiliate", affiliate, subject=f"bench-{affiliate}")
    os.environ["FATURE_TRUSTED_DOCUMENTS_PATH"] = str(MANIFEST)
    load = os.getloadavg()[0]
    started = time.time()
    server = fature(PORT, args.robust_url, cache=False, rate_limits=False)
    try:
        variants = targets(PORT, token, affiliate)
        # Register the APQ hash once (what Apollo's link does on its first miss), then check
        # every variant answers the same data.
        register = post(PORT, "/graphql", {"query": DASHBOARD_QUERY, "variables": {"id": str(affiliate)},
                                           "extensions": {"persistedQuery": {
                                               "version": 1, "sha256Hash": sha256_hex(DASHBOARD_QUERY)}}},
                        token, "register")
        check = drive(PORT, [register], concurrency=1, seconds=0.2, warmup=0.0, count=1)
        assert not check.errors, check.errors
        for variant in variants:
            report = drive(PORT, [variant], concurrency=1, seconds=0.3, warmup=0.0, count=3)
            assert not report.errors, (variant.label, report.errors[:2])
        latency: dict[str, list[float]] = {v.label: [] for v in variants}
        throughput: dict[str, list[float]] = {v.label: [] for v in variants}
        for round_ in range(args.rounds):
            one = drive(PORT, variants, concurrency=1, seconds=args.seconds * len(variants), warmup=0.5)
            assert not one.errors, one.errors[:2]
            for variant in variants:
                latency[variant.label].append(statistics.median(one.latencies[variant.label]) * 1000)
            order = variants[round_ % len(variants):] + variants[:round_ % len(variants)]
            for variant in order:
                many = drive(PORT, [variant], concurrency=args.clients, seconds=args.seconds, warmup=0.5)
                assert not many.errors, many.errors[:2]
                throughput[variant.label].append(many.completed / many.seconds)
    finally:
        server.stop()
    full_p50 = statistics.median(latency["full"])
    full_rps = statistics.median(throughput["full"])
    print(f"affiliate {affiliate}; {args.rounds} rounds; {args.seconds:g} s per variant and round; "
          f"{args.clients} clients for requests/s")
    print("| variant | body bytes | HTTP request bytes | p50, 1 client, interleaved (median of rounds; "
          "min-max) | vs full | "
          f"requests/s, {args.clients} clients (median of rounds; min-max) | vs full |")
    print("|---|---|---|---|---|---|---|")
    for variant in variants:
        p50 = statistics.median(latency[variant.label])
        rps = statistics.median(throughput[variant.label])
        spread = f"{min(latency[variant.label]):.3f}-{max(latency[variant.label]):.3f}"
        print(f"| {variant.label} | {body_bytes(variant):,} | {len(variant.raw):,} | {p50:.3f} ms ({spread}) | "
              f"{p50 / full_p50:.3f} | {rps:.0f} ({min(throughput[variant.label]):.0f}-"
              f"{max(throughput[variant.label]):.0f}) | {rps / full_rps:.3f} |")
    print(f"machine: {platform.node()}, {platform.platform()}, {os.cpu_count()} CPUs, Python "
          f"{platform.python_version()}; load average {load:.2f} at the start, {os.getloadavg()[0]:.2f} "
          f"at the end; {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
