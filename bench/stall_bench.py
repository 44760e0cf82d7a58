"""How long the largest documents the API accepts (or refuses) stall other requests.

    .venv/bin/python -m bench.stall_bench [--robust-url postgresql://postgres@127.0.0.1:5432/fature_bench_robust]
                                          [--seconds 6]

One uvicorn worker (as bench.api_bench starts it) on any robust database. A probe client sends
`GET /healthz` back to back and records each answer's latency, first alone, then while a
second client keeps sending one kind of maximal request after another:

- a valid query padded with a comment to just under FATURE_MAX_DOCUMENT_BYTES (it is parsed);
- a document just over that limit (refused before it is parsed);
- a token-dense document of the same size (refused by the token limit while it is parsed);
each request a distinct document (its own operation name), so no cache of documents helps;
- a body just over FATURE_MAX_BODY_BYTES (refused with 413 before it is read in full).

Prints the probe's p50/p99/max per phase and what the heavy client got, as Markdown.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import time
from collections.abc import Callable

from bench.api_bench import fature, token
from db.settings import Settings

PORT = 8799


async def _request(raw: bytes) -> tuple[int, float]:
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", PORT)
    try:
        writer.write(raw)
        await writer.drain()
        head = await reader.readuntil(b"\r\n")
        while await reader.readline() not in (b"\r\n", b""):
            pass
        await reader.read(1 << 20)
        return int(head.split()[1]), time.perf_counter() - started
    except (ConnectionError, asyncio.IncompleteReadError):
        return 0, time.perf_counter() - started
    finally:
        writer.close()


def _post(body: bytes, bearer: str) -> bytes:
    return (f"POST /graphql HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {bearer}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            ).encode() + body


HEALTH = b"GET /healthz HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"


Heavy = Callable[[int], bytes]  # the n-th request of a kind: every one a distinct document


def heavy_requests(settings: Settings, bearer: str) -> dict[str, Heavy]:
    limit = settings.max_document_bytes

    def document(n: int, body: str, size: int) -> bytes:
        # A distinct operation name each time: nothing is served from a cache of documents.
        head = f"query Q{n:09d} {{ syncStatus {{ dataAsOf }} }}\n#" if body == "comment" else f"query Q{n:09d} "
        text = head + ("x" * (size - len(head)) if body == "comment" else body)
        return _post(json.dumps({"query": text}).encode(), bearer)

    dense = "{ me { " + "id " * ((limit - 40) // 3) + "} }"
    return {
        f"valid query padded to {limit - 8:,} bytes (parsed)": lambda n: document(n, "comment", limit - 8),
        f"document of {limit + 8:,} bytes (refused before parsing)": lambda n: document(n, "comment", limit + 8),
        f"token-dense document of ~{len(dense) + 16:,} bytes (token limit)": lambda n: document(n, dense, 0),
        f"body of {settings.max_body_bytes + 64:,} bytes (413)":
            lambda n: document(n, "comment", settings.max_body_bytes + 64),
    }


async def probe(seconds: float, heavy: Heavy | None) -> tuple[list[float], list[tuple[int, float]]]:
    latencies: list[float] = []
    heavy_results: list[tuple[int, float]] = []
    deadline = time.perf_counter() + seconds

    async def probing() -> None:
        while time.perf_counter() < deadline:
            status, elapsed = await _request(HEALTH)
            if status == 200:
                latencies.append(elapsed)

    async def loading() -> None:
        assert heavy is not None
        n = 0
        while time.perf_counter() < deadline:
            n += 1
            heavy_results.append(await _request(heavy(n)))

    await asyncio.gather(probing(), *([loading()] if heavy is not None else []))
    return latencies, heavy_results


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--robust-url", default="postgresql://postgres@127.0.0.1:5432/fature_bench_robust")
    parser.add_argument("--seconds", type=float, default=6.0)
    args = parser.parse_args()
    settings = Settings(_env_file=None)
    server = fature(PORT, args.robust_url, cache=False, rate_limits=False)
    try:
        bearer = token("admin")
        rows = ["| load on the server | /healthz p50 | p99 | max | heavy requests: count, statuses, median time |",
                "|---|---|---|---|---|"]
        phases: list[tuple[str, Heavy | None]] = [("none", None), *heavy_requests(settings, bearer).items()]
        for name, heavy in phases:
            latencies, results = await probe(args.seconds, heavy)
            statuses = sorted({s for s, _ in results})
            heavy_text = (f"{len(results)}, {statuses}, {statistics.median(t for _, t in results) * 1000:.1f} ms"
                          if results else "-")
            rows.append(f"| {name} | {pct(latencies, 0.5):.2f} ms | {pct(latencies, 0.99):.2f} ms | "
                        f"{max(latencies) * 1000:.2f} ms | {heavy_text} |")
    finally:
        server.stop()
    print(f"### Stall by maximal requests ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})\n")
    print(f"`python -m bench.stall_bench`; {platform.node()}, {platform.platform()}, one uvicorn worker; "
          f"{args.seconds:.0f} s a phase; the probe sends /healthz back to back on new connections.\n")
    print("\n".join(rows))


if __name__ == "__main__":
    asyncio.run(main())
