"""What the live updates (web/subscriptions.py) share across connections: the feed of committed
ETL runs and the per-token counts of connections and subscriptions (``LiveUpdates``, built by
the app's lifespan, holds both).

Commits reach every API process: ``web/freshness.py`` moves the data generation on the
in-process ``EtlCommitted`` event, on PostgreSQL ``NOTIFY`` (milliseconds after another
process commits), on the ETL's announcements on Redis (``web/bus.py``: the way for processes
reading a replica, which never delivers NOTIFY) and on its poll of ``etl.runs``;
``CommitHub.publish`` listens there, so every subscription sees each commit once, whichever
way it came.

Counts are per token subject. With ``FATURE_REDIS_URL`` they are shared by every process: a
sorted set per subject holds one member per connection (or subscription) scored by its lease's
end, taken and checked atomically by a Lua script with Redis' clock; each process renews its
leases every ``LEASE_SECONDS / 3``, so the slots of a process that died free themselves within
``LEASE_SECONDS``. Without Redis (or while it is down) each process counts its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections import deque
from datetime import datetime
from types import TracebackType
from typing import Any

from redis.asyncio import Redis

from db.settings import Settings
from schema.subscription import DataCommit
from web.state import ApiState

log = logging.getLogger("fature.api")

MAX_PENDING = 100  # commits a slow subscriber may fall behind by (the oldest are dropped)
LEASE_SECONDS = 60
_ACQUIRE = """
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', t)
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
end
redis.call('ZADD', KEYS[1], t + tonumber(ARGV[3]), ARGV[1])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]) + 1)
return 1
"""


class CommitFeed:
    """The commits published after it was entered, in order (``with hub.feed() as feed:
    async for commit in feed``)."""

    def __init__(self, hub: CommitHub) -> None:
        self._hub = hub
        self._pending: deque[DataCommit] = deque(maxlen=MAX_PENDING)
        self._ready = asyncio.Event()

    def __enter__(self) -> CommitFeed:
        self._hub.feeds.add(self)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._hub.feeds.discard(self)

    def put(self, commit: DataCommit) -> None:
        self._pending.append(commit)
        self._ready.set()

    def __aiter__(self) -> CommitFeed:
        return self

    async def __anext__(self) -> DataCommit:
        while not self._pending:
            self._ready.clear()
            await self._ready.wait()
        return self._pending.popleft()


class CommitHub:
    """Fans each new data generation out to the open feeds of this process."""

    def __init__(self) -> None:
        self.feeds: set[CommitFeed] = set()

    def feed(self) -> CommitFeed:
        return CommitFeed(self)

    def publish(self, run_id: int, as_of: datetime | None) -> None:
        commit = DataCommit(run_id, as_of)
        for feed in list(self.feeds):
            feed.put(commit)


class TokenSlots:
    """Counted slots per (kind, token subject): ``acquire`` refuses past the limit."""

    def __init__(self, settings: Settings) -> None:
        self._local: dict[str, set[str]] = {}
        self._held: dict[tuple[str, str], None] = {}  # what this process holds (renewed)
        self._redis: Redis | None = None
        self._script: Any = None
        self._down_until = 0.0
        self._retry_seconds = settings.cache_retry_seconds
        if settings.redis_url:
            self._redis = Redis.from_url(
                settings.redis_url, socket_timeout=max(settings.cache_timeout_seconds, 1.0),
                socket_connect_timeout=max(settings.cache_timeout_seconds, 1.0),
            )
            self._script = self._redis.register_script(_ACQUIRE)

    @property
    def shared(self) -> bool:
        return self._redis is not None

    @staticmethod
    def key(kind: str, subject: str) -> str:
        # Hashed: a subject may be personal data and may hold any character.
        return f"fature:ws:{kind}:{hashlib.sha256(subject.encode()).hexdigest()[:32]}"

    def _redis_up(self) -> bool:
        return self._redis is not None and asyncio.get_running_loop().time() >= self._down_until

    def _redis_failed(self, exc: Exception) -> None:
        if self._down_until == 0.0:
            log.warning("WebSocket limits counted per process: Redis is unavailable (%s)", type(exc).__name__)
        self._down_until = asyncio.get_running_loop().time() + self._retry_seconds

    async def acquire(self, kind: str, subject: str, member: str, limit: int) -> bool:
        key = self.key(kind, subject)
        if self._redis_up():
            try:
                taken = bool(await self._script(keys=[key], args=[member, limit, LEASE_SECONDS]))
            except Exception as exc:  # noqa: BLE001 - redis-py raises many kinds; count locally
                self._redis_failed(exc)
            else:
                if taken:
                    self._held[(key, member)] = None
                return taken
        members = self._local.setdefault(key, set())
        if len(members) >= limit and member not in members:
            return False
        members.add(member)
        self._held[(key, member)] = None
        return True

    async def release(self, kind: str, subject: str, member: str) -> None:
        key = self.key(kind, subject)
        if (key, member) not in self._held:
            return  # never taken, or already released
        del self._held[(key, member)]
        members = self._local.get(key)
        if members is not None:
            members.discard(member)
            if not members:
                del self._local[key]
        if self._redis is not None:
            try:
                await self._redis.zrem(key, member)
            except Exception:  # noqa: BLE001 - the lease ends by itself
                pass

    def count(self, kind: str, subject: str) -> int:
        """The slots of this kind this process holds for the subject."""
        prefix = self.key(kind, subject)
        return sum(1 for key, _ in self._held if key == prefix)

    async def renew(self) -> None:
        """Extend this process' leases (shared mode)."""
        if not self._redis_up():
            return
        try:
            for key, member in list(self._held):
                await self._script(keys=[key], args=[member, 2**31, LEASE_SECONDS])
        except Exception as exc:  # noqa: BLE001
            self._redis_failed(exc)

    async def renew_forever(self) -> None:
        while True:
            await asyncio.sleep(LEASE_SECONDS / 3)
            await self.renew()

    async def close(self) -> None:
        if self._redis is not None:
            with contextlib.suppress(Exception):
                await self._redis.aclose()


class LiveUpdates:
    """Built by the app's lifespan: the commit hub fed by the data generation, the per-token
    slots and their lease renewal."""

    def __init__(self, api: ApiState) -> None:
        self.api = api
        self.hub = CommitHub()
        self.slots = TokenSlots(api.settings)
        self._renewer: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.api.freshness.advance_listeners.append(self.hub.publish)
        if self.slots.shared:
            self._renewer = asyncio.get_running_loop().create_task(self.slots.renew_forever())

    async def stop(self) -> None:
        with contextlib.suppress(ValueError):
            self.api.freshness.advance_listeners.remove(self.hub.publish)
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
        await self.slots.close()
