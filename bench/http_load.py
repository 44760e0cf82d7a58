"""The load generator of the API benches: HTTP/1.1 keep-alive clients on asyncio (uvloop) in a
process of their own, so they do not share the server's core; an httpx pool would cost the
2-core machine more CPU than the server under test. ``drive`` runs them for a time (or a
count) and reports latencies per label, statuses, errors and, when asked, the CPU the given
process trees spent in the measuring window (bench/proc_cpu.py)."""

from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import time
from dataclasses import dataclass, field
from typing import Any

from bench.proc_cpu import delta, tree_seconds


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
    # CPU seconds of each process tree asked for (bench/proc_cpu.py) over the measuring window
    cpu: dict[str, float] = field(default_factory=dict)


async def _clients(
    port: int, targets: list[Target], concurrency: int, seconds: float, warmup: float,
    count: int | None, keep_answers: bool, cpu_roots: dict[str, int] | None = None,
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
    # The window counted: from here to the last answer (requests in flight now are counted).
    cpu_before = tree_seconds(cpu_roots) if cpu_roots else {}
    measuring = True
    began = loop.time()
    stop_at = began + seconds
    await asyncio.gather(*tasks)
    report.seconds = loop.time() - began
    if cpu_roots:
        report.cpu = delta(cpu_before, tree_seconds(cpu_roots))
    return report


def _client_process(queue: Any, args: tuple[Any, ...]) -> None:
    import uvloop

    queue.put(uvloop.run(_clients(*args)))


def drive(
    port: int, targets: list[Target], *, concurrency: int, seconds: float = 8.0, warmup: float = 1.0,
    count: int | None = None, keep_answers: bool = False, cpu_roots: dict[str, int] | None = None,
) -> ClientReport:
    """Run the clients in a separate process (so they do not share the server's core).
    ``cpu_roots`` (name: pid) asks for the CPU seconds of those process trees over the
    measuring window (``ClientReport.cpu``)."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    process = ctx.Process(target=_client_process,
                          args=(queue, (port, targets, concurrency, seconds, warmup, count, keep_answers,
                                        cpu_roots)))
    process.start()
    report = queue.get(timeout=seconds + warmup + 120)
    process.join(10)
    return report


def drive_async(**kw: Any) -> asyncio.Future[ClientReport]:
    return asyncio.get_running_loop().run_in_executor(None, lambda: drive(**kw))


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000
