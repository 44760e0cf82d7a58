"""ETL commits through Redis (etl/bus.py -> web/bus.py): they reach every API process where
PostgreSQL's NOTIFY cannot (a replica never delivers it), and survive a Redis restart.

The ETL runs in another process with its NOTIFY turned off (what an API process reading a
replica experiences) and the apps' poll of etl.runs is off, so Redis is the only way news can
arrive; an app without Redis is the control that shows nothing else carried it.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path

import orjson
import pytest
from redis.asyncio import Redis
from starlette.applications import Starlette

from app import create_app
from db.settings import Settings
from etl import bus
from tests.support.factories import Operation, fetch
from tests.support.live import free_port
from tests.support.tools import debian_packages

ROOT = Path(__file__).resolve().parents[2]
SHARED_REDIS = "redis://127.0.0.1:6379/0"
# The stated time from an ETL commit to every API process' Freshness (docs/deploy.md).
DELIVERY_SECONDS = 2.0

# One ETL cycle in its own process, with NOTIFY off: prints the run id.
ETL_SCRIPT = textwrap.dedent("""
    import asyncio, sys
    from db.settings import Settings
    from etl import runs
    from etl.sync import run_cycle

    async def no_notify(conn, run_id, source_as_of):  # as seen from a replica: never delivered
        return None

    runs.announce_commit = no_notify
    robust, operation, redis = sys.argv[1:4]
    settings = Settings(database_url=robust, operation_database_url=operation,
                        redis_url=redis or None, _env_file=None)
    result = asyncio.run(run_cycle(settings, robust, operation, trigger="test"))
    print(result.run_id, flush=True)
""")


def etl_in_another_process(robust_url: str, operation_url: str, redis_url: str) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FATURE_")}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run([sys.executable, "-c", ETL_SCRIPT, robust_url, operation_url, redis_url],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return int(done.stdout.split()[-1])


def app_settings(robust_url: str, redis_url: str | None) -> Settings:
    return Settings(database_url=robust_url, redis_url=redis_url, freshness_poll_seconds=0,
                    etl_scheduler_enabled=False, _env_file=None)


@asynccontextmanager
async def running(settings: Settings, robust_url: str) -> AsyncIterator[Starlette]:
    app = create_app(settings, robust_url=robust_url, start_scheduler=False)
    async with app.router.lifespan_context(app):
        yield app


async def generation_reaches(app: Starlette, run_id: int, seconds: float) -> float | None:
    """When (time.time()) the app's generation reached ``run_id``; None if not within ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if app.state.api.freshness.snapshot.generation >= run_id:
            return time.time()
        await asyncio.sleep(0.005)
    return None


async def seed(operation_url: str, affiliate: int) -> None:
    op = await Operation.open(operation_url)
    await op.user(affiliate, afiliado=True)
    await op.user(affiliate + 1)
    await op.track(affiliate + 1, affiliate, "2025-01-01 12:00Z")
    await op.close()


async def test_a_commit_in_another_process_reaches_both_api_processes_through_redis(
    robust_url: str, operation_url: str
) -> None:
    await seed(operation_url, 1)
    async with (running(app_settings(robust_url, SHARED_REDIS), robust_url) as first,
                running(app_settings(robust_url, SHARED_REDIS), robust_url) as second,
                running(app_settings(robust_url, None), robust_url) as without_redis):
        for app in (first, second):
            await asyncio.wait_for(app.state.commit_bus.subscribed.wait(), 5)
        assert without_redis.state.commit_bus is None
        with first.state.live.hub.feed() as first_feed, second.state.live.hub.feed() as second_feed:
            run_id = await asyncio.to_thread(etl_in_another_process, robust_url, operation_url, SHARED_REDIS)
            reached = [await generation_reaches(app, run_id, 10) for app in (first, second)]
            # The subscriptions' feed (dataUpdated, affiliateTotals) moves with the generation.
            commits = [await asyncio.wait_for(anext(feed), 5) for feed in (first_feed, second_feed)]
        # No NOTIFY, no poll: the app without Redis never hears of the run.
        assert await generation_reaches(without_redis, run_id, 1.5) is None
    finished = (await fetch(robust_url, "SELECT finished_at FROM etl.runs WHERE id = $1", run_id))[0][0]
    assert isinstance(finished, datetime)
    assert None not in reached, reached
    latencies = [moment - finished.timestamp() for moment in reached if moment is not None]
    print(f"commit -> Freshness of each API process: {', '.join(f'{s * 1000:.0f} ms' for s in latencies)}")
    assert max(latencies) < DELIVERY_SECONDS
    assert [c.run_id for c in commits] == [run_id, run_id]
    # What travelled: the run, its source as-of and the affiliates it touched.
    redis = Redis.from_url(SHARED_REDIS)
    try:
        last = await redis.get(bus.last_key(bus.database_name(robust_url)))
        await redis.delete(bus.last_key(bus.database_name(robust_url)))
    finally:
        await redis.aclose()
    assert last is not None
    message = orjson.loads(last)
    assert message["run_id"] == run_id and 1 in message["affiliate_ids"]
    assert message["affiliates"] == len(message["affiliate_ids"])
    assert message["digest"] == hashlib.sha256(",".join(map(str, message["affiliate_ids"])).encode()).hexdigest()
    assert bus.decode(last).source_as_of == commits[0].as_of


class OwnRedis:
    """A redis-server of this test's own (no persistence), to stop and start again."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            debian_packages({"redis-server": "redis-server"})
            binary = shutil.which("redis-server")
        assert binary is not None, "redis-server could not be installed"
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.directory)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while subprocess.run(["redis-cli", "-p", str(self.port), "ping"], capture_output=True,
                             text=True, check=False).stdout.strip() != "PONG":
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    redis = OwnRedis(tmp_path)
    redis.start()
    try:
        yield redis
    finally:
        redis.stop()


async def test_the_subscriber_comes_back_after_a_redis_restart_and_catches_up(
    robust_url: str, operation_url: str, own_redis: OwnRedis
) -> None:
    await seed(operation_url, 1)
    async with running(app_settings(robust_url, own_redis.url), robust_url) as app:
        subscriber = app.state.commit_bus
        await asyncio.wait_for(subscriber.subscribed.wait(), 5)
        first = await asyncio.to_thread(etl_in_another_process, robust_url, operation_url, own_redis.url)
        assert await generation_reaches(app, first, 5) is not None

        own_redis.stop()
        await seed(operation_url, 10)
        # Committed while Redis is down: announced to no one (the ETL logs it and succeeds).
        missed = await asyncio.to_thread(etl_in_another_process, robust_url, operation_url, own_redis.url)
        assert missed > first
        assert await generation_reaches(app, missed, 1.5) is None
        restarted = time.monotonic()
        own_redis.start()
        # Subscribed again within the backoff's cap, then Freshness re-reads etl.runs.
        assert await generation_reaches(app, missed, 15) is not None
        caught_up = time.monotonic() - restarted
        print(f"Redis restarted -> resubscribed and caught up in {caught_up:.2f} s")
        assert subscriber.subscriptions >= 2
        assert caught_up < 10

        # And the channel works again for the next commit.
        await seed(operation_url, 20)
        received = subscriber.received
        after = await asyncio.to_thread(etl_in_another_process, robust_url, operation_url, own_redis.url)
        assert await generation_reaches(app, after, DELIVERY_SECONDS + 3) is not None
        # NOTIFY may move the generation first: the bus's own message follows within its time.
        deadline = time.monotonic() + DELIVERY_SECONDS + 3
        while time.monotonic() < deadline:
            if subscriber.received > received:
                break
            await asyncio.sleep(0.01)
        assert subscriber.received > received


async def test_a_malformed_message_is_ignored(robust_url: str, own_redis: OwnRedis) -> None:
    async with running(app_settings(robust_url, own_redis.url), robust_url) as app:
        subscriber = app.state.commit_bus
        await asyncio.wait_for(subscriber.subscribed.wait(), 5)
        redis = Redis.from_url(own_redis.url)
        try:
            await redis.publish(bus.channel(bus.database_name(robust_url)), b"not json")
            await asyncio.sleep(0.3)
            # Another deployment's channel (another robust database name) is not heard.
            await redis.publish(bus.channel("someone_else"), orjson.dumps(
                {"run_id": 99, "mode": "incremental", "source_as_of": None, "affiliate_ids": []}))
            await asyncio.sleep(0.3)
        finally:
            await redis.aclose()
        assert subscriber.subscribed.is_set()
        assert subscriber.received == 0
        assert app.state.api.freshness.snapshot.generation == 0

