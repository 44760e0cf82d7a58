"""The API's side of the ETL commits on Redis (``etl/bus.py`` publishes them).

With ``FATURE_REDIS_URL`` set, every API process subscribes to the channel and hands each
announced commit to ``Freshness.on_commit`` (web/freshness.py), the same entry point as the
in-process event: the data generation, the response cache's keys and the live updates
(web/live.py: ``dataUpdated``, ``affiliateTotals``) move from there. Freshness decides whether
the read node already holds the run; this module only carries the news.

When Redis goes away (a restart, a network cut) the subscriber reconnects with a backoff
(``BACKOFF_FIRST_SECONDS`` doubling up to ``BACKOFF_MAX_SECONDS``); once subscribed again it
reads the last announced commit (``etl.bus.last_key``) and asks Freshness to re-read
``etl.runs``, so nothing committed meanwhile is missed. A connection that stops answering
without closing (half-open) is noticed by a ping every ``PING_SECONDS``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis

from etl import bus
from etl.events import EtlCommitted

log = logging.getLogger("fature.api")

BACKOFF_FIRST_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 5.0
PING_SECONDS = 10.0
CONNECT_TIMEOUT_SECONDS = 2.0


class CommitSubscriber:
    """Subscribes to the ETL's commits on Redis until stopped; see the module docstring."""

    def __init__(
        self,
        redis_url: str,
        robust_url: str,
        on_commit: Callable[[EtlCommitted], None],
        on_resubscribed: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.redis_url = redis_url
        self.channel = bus.channel(bus.database_name(robust_url))
        self.last_key = bus.last_key(bus.database_name(robust_url))
        self.on_commit = on_commit
        self.on_resubscribed = on_resubscribed
        self.subscribed = asyncio.Event()  # set while subscribed (tests and health look at it)
        self.subscriptions = 0  # how many times it subscribed (1 + the reconnections)
        self.received = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    def _deliver(self, message: bytes | str) -> None:
        try:
            event = bus.decode(message)
        except (ValueError, KeyError, TypeError):
            log.warning("ignored a malformed ETL commit message on Redis")
            return
        self.received += 1
        try:
            self.on_commit(event)
        except Exception:  # noqa: BLE001 - a listener's bug must not end the subscription
            log.exception("handling an ETL commit from Redis failed")

    async def _run(self) -> None:
        delay = BACKOFF_FIRST_SECONDS
        while True:
            before = self.subscriptions
            try:
                await self._subscribed_session()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - Redis down or restarting: try again
                if self.subscriptions > before or before == 0 and delay == BACKOFF_FIRST_SECONDS:
                    log.warning("ETL commits from Redis interrupted (%s); resubscribing",
                                type(exc).__name__)
            if self.subscriptions > before:  # a session that worked resets the backoff
                delay = BACKOFF_FIRST_SECONDS
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX_SECONDS)

    async def _subscribed_session(self) -> None:
        client = Redis.from_url(self.redis_url, socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
                                socket_timeout=PING_SECONDS * 2)
        pubsub = client.pubsub()
        try:
            await pubsub.subscribe(self.channel)
            last = await client.get(self.last_key)  # what may have been announced meanwhile
            self.subscriptions += 1
            self.subscribed.set()
            if self.subscriptions > 1:
                log.info("ETL commits from Redis: subscribed again")
            if last is not None:
                self._deliver(last)
            if self.subscriptions > 1 and self.on_resubscribed is not None:
                with contextlib.suppress(Exception):
                    await self.on_resubscribed()
            loop = asyncio.get_running_loop()
            heard = loop.time()
            while True:
                message = await pubsub.get_message(timeout=1.0)
                now = loop.time()
                if message is not None:
                    heard = now
                    if message.get("type") == "message":
                        self._deliver(message["data"])
                elif now - heard > PING_SECONDS * 2:
                    raise ConnectionError("no answer from Redis to the subscriber's pings")
                elif now - heard > PING_SECONDS:
                    await pubsub.ping()  # its pong is a message: ``heard`` moves
        finally:
            self.subscribed.clear()
            with contextlib.suppress(Exception):
                await pubsub.aclose()
            with contextlib.suppress(Exception):
                await client.aclose()
